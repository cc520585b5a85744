"""Benchmark: the local-expectation reference of gradient quality on the 784-512-512-512-10 SBN MLP.

Target (project issue 19): a batch of 100 MNIST test images, cosine interval half-width 0.02,
under 2 minutes on 2 CPU cores. Prints, per check of :func:`stbin.analysis.gradient_quality`,
the number of reference samples, the largest cosine half-width, the wall time and the
process CPU time (user + system; on a machine shared with other jobs the wall time
overstates what 2 free cores need, CPU time / 2 approximates it), then the per-sample cost
of the local-expectation and DisARM references measured in the same run.

    python benchmarks/bench_gradient_quality.py CHECKPOINT [--tolerance 0.02] [--max-seconds 1800]

CHECKPOINT: a checkpoint of ``stbin train --preset sbn_mnist`` (any epoch).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stbin.analysis import gradient_quality
    from stbin.analysis.reference import reference_sample
    from stbin.training.gradient_quality import load_model_and_batch

    model, x, y = load_model_and_batch(args.checkpoint, args.batch)

    def loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(o, t, reduction="none")

    for ref in ("local_expectation", "disarm"):
        g = torch.Generator().manual_seed(0)
        reference_sample(model, loss, x, y, ref, g)  # warm-up
        t0, c0 = time.perf_counter(), cpu_s()
        for _ in range(3):
            reference_sample(model, loss, x, y, ref, g)
        print(f"{ref}: {(time.perf_counter() - t0) / 3:.2f} s wall, {(cpu_s() - c0) / 3:.2f} s CPU per sample",
              flush=True)
    t0, c0 = time.perf_counter(), cpu_s()

    def progress(n: int, worst: float) -> None:
        print(f"  {n} samples: largest cosine half-width {worst:.4f}, {time.perf_counter() - t0:.1f} s wall, "
              f"{cpu_s() - c0:.1f} s CPU", flush=True)

    res = gradient_quality(model, loss, x, y, tolerance=args.tolerance, generator=torch.Generator().manual_seed(1),
                           max_seconds=args.max_seconds, progress=progress)
    print(res.message)
    print(f"total: {time.perf_counter() - t0:.1f} s wall, {cpu_s() - c0:.1f} s CPU ({args.threads} threads)")


if __name__ == "__main__":
    main()
