"""What an idle spell costs the engine's next calls: two consecutive ``predict`` calls after a pause, against calls
back to back, for the engine on one thread, on two with parallel kernels over the whole batch, and on two with the
batch split by rows (``stbin.deploy.batch_split``). On the project's 2-vCPU machine the split's two parts stopped
overlapping for a while after a 50 ms sleep (the second vCPU wakes slowly); flushing the cache did not do that.

    PYTHONPATH=. python benchmarks/bench_idle_wake.py [--network resnet20] [--batch 64] [--pause-ms 50] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _plan_calls import workload  # this folder's helper


def _call_ms(net, x) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    net.predict(x)
    return (time.perf_counter() - t) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pause-ms", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import torch

    from stbin.deploy import batch_split, kernels

    flush = np.ones(8_000_000, np.float32)  # 32 MB
    seconds = args.pause_ms / 1e3

    def busy() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    pauses = {"back to back": lambda: None, "sleep": lambda: time.sleep(seconds),
              "cache flush": lambda: flush.__imul__(1.0), "busy wait": busy}

    print(f"{args.network} at batch {args.batch}; medians of {args.rounds} pairs of calls (ms): first / second")
    ways = (("1 thread", 1, False), ("2 threads, whole batch", 2, False), ("2 threads, split", 2, True))
    for label, threads, split in ways:
        kernels.set_threads(threads)
        torch.set_num_threads(threads)
        before = batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS
        batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS = (before[0] if split else float("inf")), 0
        try:
            net, x = workload(args.network, args.batch)
            for _ in range(8):
                net.predict(x)
        finally:
            batch_split.SPLIT_MIN_SECONDS, batch_split.TRIAL_ROUNDS = before
        cells = []
        for name, pause in pauses.items():
            firsts, nexts = [], []
            for _ in range(args.rounds):
                pause()
                firsts.append(_call_ms(net, x))
                nexts.append(_call_ms(net, x))
            cells.append(f"{name} {statistics.median(firsts):.2f} / {statistics.median(nexts):.2f}")
        print(f"  {label:24s} " + "; ".join(cells))


if __name__ == "__main__":
    main()
