"""The last layer of a binary MLP on packed ±1 inputs (``bits_dense``, 512 -> 10 by default): its serial and
parallel compiled loops timed inside a compiled repeat loop (no numba dispatch), per batch size, minimum of
seven runs, in microseconds. Runs on any tree (before ``signed_weights`` the loop took ``Wt`` itself), so the
same command measures a baseline: ``PYTHONPATH=<other tree> python benchmarks/bench_bits_dense.py``.

    PYTHONPATH=. python benchmarks/bench_bits_dense.py [--k 512 --m 10 --batches 1 4 8 64]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
from numba import njit


@njit(cache=False)
def _repeat(f, n, *args):  # type: ignore[no-untyped-def]
    for _ in range(n):
        f(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--m", type=int, default=10)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 64])
    args = ap.parse_args()
    from stbin.deploy import _dense_loops as D
    from stbin.deploy import dense_kernels

    rng = np.random.default_rng(0)
    wt = rng.standard_normal((args.k, args.m)).astype(np.float32)
    b = rng.standard_normal(args.m).astype(np.float32)
    w = dense_kernels.signed_weights(wt) if hasattr(dense_kernels, "signed_weights") else wt
    for n in args.batches:
        X = rng.integers(0, 2 ** 63, size=(n, -(-args.k // 64))).astype(np.uint64)
        out = np.empty((n, args.m), np.float32)
        for f in (D.bits_dense_serial, D.bits_dense):
            _repeat(f, 1, X, args.k, w, b, out)
            r = max(20000 // n, 50)
            t = min(timeit.repeat(lambda: _repeat(f, r, X, args.k, w, b, out), number=1, repeat=7)) / r
            print(f"batch {n:4d}  {f.py_func.__name__:18s} {t * 1e6:8.2f} us")


if __name__ == "__main__":
    main()
