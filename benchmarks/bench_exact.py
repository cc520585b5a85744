"""Benchmark: exact gradients of the reference 2-5-5-5 stochastic binary network over 200 points.

Budget (project issue 3): under 0.5 s on CPU. Prints the median time over repeated calls
(after a warm-up) for 1 and 2 torch threads, and the ratio to the budget.

    python benchmarks/bench_exact.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stbin.analysis import exact_gradients, logistic_loss, reference_data, reference_network

BUDGET_S = 0.5


def bench(repeats: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    x, y = reference_data(100, torch.Generator().manual_seed(0))
    model = reference_network(generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        exact_gradients(model, logistic_loss, x, y)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        exact_gradients(model, logistic_loss, x, y)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    print(f"exact gradients, 2-5-5-5 logistic network (15 binary units), 200 points, float64, torch "
          f"{torch.__version__}")
    for threads in (1, 2):
        med, best = bench(args.repeats, threads)
        print(f"  threads={threads}: median {med * 1e3:.2f} ms, best {best * 1e3:.2f} ms over {args.repeats} calls; "
              f"{med / BUDGET_S:.4f} of the {BUDGET_S} s budget ({BUDGET_S / med:.0f}x under)")


if __name__ == "__main__":
    main()
