"""The fused threshold of a binary convolution with and without its multiply, on the same kernel and layer.

``bconv2d_sign`` decides ``S * d >= T`` per output channel. Where every ``S`` is +1 or -1 (as the engine's
folding writes them) it skips the 64-bit multiply (``v8_minus_bits_unit``); any other ``S`` takes the
multiply. ``(2 S, 2 T)`` decides the same bits for every integer ``d`` (``2 S d >= 2 T`` iff ``S d >= T``)
but is not of the unit form, so timing the kernel on ``(S, T)`` and on ``(2 S, 2 T)``, alternating in one
process, measures what the multiply costs in the whole loop. The layer is one of a network of
``stbin bench-inference`` (default: resnet20's first 16-channel convolution), at ``--batch``, with the
serial loop (one thread) or the parallel one.

    PYTHONPATH=. python benchmarks/bench_thresholds.py [--network resnet20] [--batch 64] [--layer 0] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _plan_calls import recorded_steps, workload  # this folder's helper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="resnet20", help="a workload of stbin bench-inference")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--layer", type=int, default=0, help="which bconv2d_sign call of the plan (0-based among them)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--parallel", action="store_true", help="the parallel loop (default: the serial one)")
    args = ap.parse_args()
    from stbin.deploy import _conv_loops, kernels

    kernels.set_threads(2 if args.parallel else 1)
    net, x = workload(args.network, args.batch)
    calls = [a for _, recorded in recorded_steps(net, x) for loop, a in recorded
             if loop.py_func.__name__.startswith("bconv2d_sign")]
    a = list(calls[args.layer])
    S, T = a[9], a[10]
    if not np.isin(S, (-1, 1)).all():
        raise SystemExit(f"layer {args.layer}: S is not +-1 everywhere, nothing to compare")
    loop = _conv_loops.bconv2d_sign if args.parallel else _conv_loops.bconv2d_sign_serial
    unit_out, mul_out = np.empty_like(a[11]), np.empty_like(a[11])
    unit_args = a[:11] + [unit_out]
    mul_args = a[:9] + [(2 * S).astype(np.int32), (2 * T).astype(np.int32), mul_out]
    loop(*unit_args)
    loop(*mul_args)
    if not np.array_equal(unit_out, mul_out):
        raise SystemExit("the two forms gave different bits")
    tu, tm = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        loop(*mul_args)
        tm.append(time.perf_counter() - t)
        t = time.perf_counter()
        loop(*unit_args)
        tu.append(time.perf_counter() - t)
    xs = a[0].shape
    print(f"{args.network} bconv2d_sign #{args.layer}, input {xs}, {'parallel' if args.parallel else 'serial'}: "
          f"with the multiply {np.median(tm) * 1e3:.3f} ms, without {np.median(tu) * 1e3:.3f} ms "
          f"(ratio {np.median(tu) / np.median(tm):.3f}, medians of {args.rounds} alternating calls; bits identical)")


if __name__ == "__main__":
    main()
