"""Large batches split by rows over the engine's threads (``stbin.deploy.batch_split``) against the same network
run as one batch with parallel kernels, alternating in one process.

For each workload of ``stbin bench-inference`` (random weights, batch norms randomised), two compiled networks
predict the same batch: ``split`` (a batch that took 2 ms or more runs as one part of its rows per thread, kept
without the engine's trial against the whole batch) and ``whole`` (``SPLIT_MIN_SECONDS`` out of reach while its
plan settles: parallel kernels over the whole batch). Each round times a burst of consecutive calls of each (about ``--burst-ms``); medians over
``--repeats`` rounds, and the CPU time per call of the process (all threads). The outputs of the two are checked
to be identical.

    PYTHONPATH=. python benchmarks/bench_batch_split.py
    PYTHONPATH=. python benchmarks/bench_batch_split.py --networks resnet20 --batch 64 --threads 2 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _plan_calls import workload  # this folder's helper


def _settle(net, x, split_min_seconds: float) -> str:  # type: ignore[no-untyped-def]
    """Run ``x`` through ``net`` until its plan for x's shape is settled, with the split floor given; the kind."""
    from stbin.deploy import batch_split, kernels
    from stbin.deploy.engine import COMPILE_AFTER

    before = batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS
    batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS = split_min_seconds, 0  # the split without its trial
    try:
        for _ in range(COMPILE_AFTER + 1):
            net.predict(x)
    finally:
        batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS = before
    plan = net._compiled.get((x.shape, kernels.get_threads()))
    return type(plan).__name__ if plan is not None else "op by op"


def _burst(f, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds) per call of ``n`` consecutive calls of ``f``."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        f()
    return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="mlp,binarynet_vgg,resnet20,bireal_resnet18")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--burst-ms", type=float, default=50.0)
    args = ap.parse_args()
    import torch

    from stbin.deploy import batch_split, kernels

    kernels.set_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} threads, numba {kernels.numba.__version__}; "
          f"split: a batch of {batch_split.SPLIT_MIN_SECONDS * 1e3:g} ms or more, kept without the engine's trial")
    print(f"{'workload':18s} {'whole ms':>9s} {'split ms':>9s} {'whole/split':>11s} "
          f"{'whole CPU ms':>12s} {'split CPU ms':>12s}  plans")
    for name in args.networks.split(","):
        whole, x = workload(name, args.batch)
        split, _ = workload(name, args.batch)
        kinds = (_settle(whole, x, float("inf")), _settle(split, x, batch_split.SPLIT_MIN_SECONDS))
        if not np.array_equal(whole.predict(x), split.predict(x)):
            raise SystemExit(f"{name}: the split outputs differ from the whole batch's")
        one = min(_burst(lambda: whole.predict(x), 1)[0], _burst(lambda: split.predict(x), 1)[0])
        n = max(1, round(args.burst_ms * 1e-3 / max(one, 1e-9)))
        rounds = [(_burst(lambda: whole.predict(x), n), _burst(lambda: split.predict(x), n))
                  for _ in range(args.repeats)]
        w = statistics.median(r[0][0] for r in rounds) * 1e3
        s = statistics.median(r[1][0] for r in rounds) * 1e3
        wc = statistics.median(r[0][1] for r in rounds) * 1e3
        sc = statistics.median(r[1][1] for r in rounds) * 1e3
        print(f"{name:18s} {w:9.3f} {s:9.3f} {w / s:10.2f}x {wc:12.3f} {sc:12.3f}  {kinds[0]} / {kinds[1]}")
    print(f"threading layer: {kernels.numba.threading_layer()}")


if __name__ == "__main__":
    main()
