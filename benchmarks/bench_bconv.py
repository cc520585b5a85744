"""The binary convolution kernels on ResNet layer shapes: CPU milliseconds per call (median), each of
the three output stages (int32 dot, fused threshold + packing, real-valued NCHW) and the fused tail of a
residual block (``bconv2d_res``: real output stage, batch norm, ±1 identity shortcut added, next sign and
packing; and with a real shortcut and real output, NCHW against channel-last), serial twin and parallel loop. Random packed operands (timings do not depend on the values).

    PYTHONPATH=. python benchmarks/bench_bconv.py [--repeats 9] [--threads 2]

Run it on two checkouts to compare kernel versions (the figures in docs/performance-deploy.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

#: (name, batch, in channels, spatial size, out channels, stride): ResNet-20's three stages at batch 64 and 1, and
#: Bi-Real ResNet-18's first stage
SHAPES = (("16x32x32 -> 16", 64, 16, 32, 16, 1), ("32x16x16 -> 32", 64, 32, 16, 32, 1),
          ("64x8x8 -> 64", 64, 64, 8, 64, 1), ("64x32x32 -> 64 (Bi-Real)", 64, 64, 32, 64, 1),
          ("16x32x32 -> 32, stride 2", 64, 16, 32, 32, 2),
          ("16x32x32 -> 16, batch 1", 1, 16, 32, 16, 1))


def median_ms(f, repeats: int, clock) -> float:  # type: ignore[no-untyped-def]
    f()
    times = []
    for _ in range(repeats):
        t = clock()
        f()
        times.append(clock() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from stbin.deploy import kernels
    from stbin.deploy.packing import n_words

    kernels.set_threads(args.threads)
    modules = getattr(kernels, "LOOP_MODULES", (kernels._loops,))  # (kernels._loops alone before the split)
    rng = np.random.default_rng(0)
    print(f"{'layer (3x3, pad 1)':28s} {'batch':>5s} {'kernel':>14s} {'serial ms':>10s} {'parallel ms':>12s}  (serial: CPU time; parallel: wall clock)")
    for name, n, c, h, oc, s in SHAPES:
        X = rng.integers(0, 2**c if c < 64 else 2**63, size=(n, h, h, n_words(c)), dtype=np.uint64)
        Wt = rng.integers(0, 2**c if c < 64 else 2**63, size=(3, 3, n_words(c), oc), dtype=np.uint64)
        oh = (h + 2 - 3) // s + 1
        S, T = np.ones(oc, np.int32), np.zeros(oc, np.int32)
        sc, b = np.ones(oc, np.float32), np.zeros(oc, np.float32)
        calls = {"bconv2d": (np.empty((n, oh, oh, oc), np.int32), ()),
                 "bconv2d_sign": (np.empty((n, oh, oh, n_words(oc)), np.uint64), (S, T)),
                 "bconv2d_float": (np.empty((n, oc, oh, oh), np.float32), (sc, b))}
        if s == 1 and c == oc and any(hasattr(m, "bconv2d_res") for m in modules):  # the identity blocks' tails
            e4, e2, e1 = np.empty((0,) * 4, np.float32), np.empty((0, 0), np.float32), np.empty(0, np.float32)
            calls["bconv2d_res"] = (np.empty((n, oh, oh, n_words(oc)), np.uint64),
                                    (sc, b, sc, b, 0, X, e4, e2, e1, e1, c, 1, 1, 0, sc, b, 1))
            # Bi-Real's tails: a real shortcut in, the real sum and the next sign out; NCHW (kind 1, the layout of the
            # unfused ops) against channel-last (kind 3, the layout fused ops keep in their slots)
            rf = rng.standard_normal((n, c, h, h)).astype(np.float32)
            eb = np.empty((0,) * 4, np.uint64)
            calls["res real NCHW"] = (np.empty((n, oh, oh, n_words(oc)), np.uint64),
                                      (sc, b, sc, b, 1, eb, rf, e2, e1, e1, c, 1, 1, 0, sc, b, 1), 1,
                                      np.empty((n, oc, oh, oh), np.float32))
            calls["res real NHWC"] = (np.empty((n, oh, oh, n_words(oc)), np.uint64),
                                      (sc, b, sc, b, 3, eb, np.ascontiguousarray(rf.transpose(0, 2, 3, 1)), e2, e1, e1,
                                       c, 1, 1, 0, sc, b, 1), 2, np.empty((n, oh, oh, oc), np.float32))
        for kern, (out, extra, *real) in calls.items():
            base = "bconv2d_res" if kern.startswith("res ") else kern
            loops = [next(getattr(m, base + sfx) for m in modules if hasattr(m, base + sfx)) for sfx in ("_serial", "")]
            tail = ((*real, oh, oh, 1, 1) if real else (0, np.empty((0,) * 4, np.float32), oh, oh, 1, 1)) \
                if base == "bconv2d_res" else ()
            ms = [median_ms(lambda f=f: f(X, Wt, c, s, s, 1, 1, 1, 1, *extra, out, *tail), args.repeats, clock)
                  for f, clock in zip(loops, (time.process_time, time.perf_counter))]
            print(f"{name:28s} {n:5d} {kern:>14s} {ms[0]:10.2f} {ms[1]:12.2f}")


if __name__ == "__main__":
    main()
