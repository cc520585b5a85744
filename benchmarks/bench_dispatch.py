"""Where the time of a small network at batch 1 goes: numba's dispatch cost, the kernels' Python-level
shape checks, and the engine's per-op overhead (medians of many calls; run on an idle machine for
stable figures).

    PYTHONPATH=. python benchmarks/bench_dispatch.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from _timing import median_seconds


def median_us(f, n: int = 2000) -> float:
    return median_seconds(f, n, warmup=50) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from numba import njit, prange

    from stbin.deploy import _dense_loops, _loops, compile_model, dense_kernels, kernels, pack_sign
    from stbin.models import build_model

    kernels.set_threads(args.threads)

    @njit(cache=False)
    def serial_noop(a):  # type: ignore[no-untyped-def]
        return a.shape[0]

    @njit(parallel=True, cache=False)
    def parallel_noop(a):  # type: ignore[no-untyped-def]
        s = 0
        for i in prange(a.shape[0]):
            s += a[i]
        return s

    a = np.zeros(2, np.uint64)
    x = pack_sign(np.random.default_rng(0).standard_normal((1, 512)))
    w = pack_sign(np.random.default_rng(1).standard_normal((512, 512)))
    S, T = np.ones(512, np.int32), np.zeros(512, np.int32)
    out = np.empty((1, 8), np.uint64)
    wt, acc = np.ascontiguousarray(w.T), np.empty((1, 512), np.uint64)
    rows = [("numba serial no-op call", median_us(lambda: serial_noop(a))),
            ("numba parallel no-op call (workqueue)", median_us(lambda: parallel_noop(a))),
            ("bgemm_sign 1x512x512, compiled loop only", median_us(lambda: _loops.bgemm_sign(x, w, 512, S, T, out))),
            ("bgemm_sign 1x512x512, checked entry point", median_us(lambda: kernels.bgemm_sign(x, w, 512, S, T, out))),
            ("bdense_sign 1x512x512 (word-major, the engine's), serial loop",
             median_us(lambda: _dense_loops.bdense_sign_serial(x, wt, 512, S, T, acc, out))),
            ("bdense_sign 1x512x512, checked entry point",
             median_us(lambda: dense_kernels.bdense_sign(x, wt, 512, S, T, out)))]
    torch.manual_seed(0)
    net = compile_model(build_model("sbn_mlp").eval())
    x1 = np.random.default_rng(2).standard_normal((1, 784)).astype(np.float32)
    rows.append((f"demo MLP 784-512-512-512-10 at batch 1 ({len(net.ops)} ops), whole predict (compiled plan)",
                 median_us(lambda: net.predict(x1), 500)))
    plan = net._compiled.get((x1.shape, kernels.get_threads()))
    if plan is not None and plan.single:
        rows.append(("  the compiled function alone", median_us(lambda: plan.fn(x1, *plan.consts), 500)))
    net.jit = False
    rows.append(("  the same, op by op (net.jit = False)", median_us(lambda: net.predict(x1), 500)))
    prof = [net.profile(x1) for _ in range(200)]
    for k, op in enumerate(net.ops):
        rows.append((f"  op {k} {op.type}", statistics.median(p[k][1] for p in prof) * 1e6))
    for name, us in rows:
        print(f"{name:60s} {us:9.1f} us")


if __name__ == "__main__":
    main()
