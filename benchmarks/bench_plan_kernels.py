"""Where a compiled plan's time goes: each compiled loop that the plan of a network calls, timed on its own
with the exact arguments the plan passes it (recorded with ``kernels.recording()``, as ``jit_plan`` does),
minimum over repeats, in microseconds. Shows which kernels a batch-1 network spends its time in.
``--in-jit`` times each loop inside a compiled repeat loop instead (no numba dispatch per call: the loop's
own time), and ``net.predict`` on the same input (median of bursts of consecutive calls).

    PYTHONPATH=. python benchmarks/bench_plan_kernels.py --network resnet20 --batch 1
    PYTHONPATH=. python benchmarks/bench_plan_kernels.py --network mlp --batch 64
    PYTHONPATH=. python benchmarks/bench_plan_kernels.py --network mlp --batch 1 --in-jit
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
from numba import njit

from _plan_calls import recorded_steps, workload  # this folder's helper


@njit(cache=False)
def _repeat(f, n, *args):  # type: ignore[no-untyped-def]
    for _ in range(n):
        f(*args)


def _in_jit(loop, args: tuple, n: int = 2000, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    """Seconds per call of the compiled ``loop`` called ``n`` times from compiled code (minimum of ``repeat``)."""
    _repeat(loop, 1, *args)
    return min(timeit.repeat(lambda: _repeat(loop, n, *args), number=1, repeat=repeat)) / n


def _predict(net, x: np.ndarray, n: int = 200, repeat: int = 15) -> float:  # type: ignore[no-untyped-def]
    """Seconds per ``net.predict(x)`` in bursts of ``n`` consecutive calls (median of ``repeat`` bursts)."""
    import statistics

    return statistics.median(timeit.repeat(lambda: net.predict(x), number=n, repeat=repeat)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="resnet20", help="a workload of stbin bench-inference")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="engine threads (1: the serial twins, as at batch 1)")
    ap.add_argument("--in-jit", action="store_true", help="time each loop in a compiled repeat loop (no dispatch)")
    args = ap.parse_args()
    from stbin.deploy import kernels

    kernels.set_threads(args.threads)
    net, x = workload(args.network, args.batch)
    rows = []
    for run_step, calls in recorded_steps(net, x):
        if not calls:  # a view (save, flatten) or a Python step (torch, BLAS): timed as a whole
            rows.append(("(step without kernels)", min(timeit.repeat(run_step, number=10, repeat=5)) / 10))
        for loop, a in calls:
            t = _in_jit(loop, a) if args.in_jit else min(timeit.repeat(lambda: loop(*a), number=20, repeat=5)) / 20
            rows.append((loop.py_func.__name__, t))
    total = sum(t for _, t in rows)
    print(f"{args.network} at batch {args.batch}, {args.threads} thread(s): {total * 1e6:.0f} us in {len(rows)} calls")
    for n, t in rows:
        print(f"  {n:32s} {t * 1e6:9.1f} us  {100 * t / total:5.1f}%")
    if args.in_jit:
        print(f"  net.predict: {_predict(net, x) * 1e6:.1f} us per call (bursts of consecutive calls)")
    assert np.isfinite(total)


if __name__ == "__main__":
    main()
