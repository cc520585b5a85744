"""Benchmark: the reference of gradient quality on the 784-512-512-512-10 SBN MLP (sbn_mnist network).

Target (project issue 19): a batch of 100 MNIST test images, cosine interval half-width 0.02,
under 2 minutes on 2 CPU cores. Runs, in one process with ``--threads`` torch threads:

1. the per-sample cost of one local-expectation reference sample (sparse flip propagation, and the
   row-by-row evaluation it replaced, as the baseline) and of one ST sample;
2. :func:`stbin.analysis.gradient_quality` with the defaults (ST control variate, Rao-Blackwellised
   unit differences) until every layer's cosine half-width is below ``--tolerance`` or
   ``--max-seconds`` pass: per check the draws, the largest half-width and the wall / CPU time;
   then the half-width per layer;
3. the baseline in the same run: the plain reference (no control variates) for the same number
   of draws (``--baseline-draws``), its half-widths per layer, and the ratio.

    python benchmarks/bench_gradient_quality.py CHECKPOINT [--tolerance 0.02] [--max-seconds 120]

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


def loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(o, t, reduction="none")


def per_sample(fn, n: int) -> tuple[float, float]:
    fn()  # warm-up
    t0, c0 = time.perf_counter(), cpu_s()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n, (cpu_s() - c0) / n


def half_widths(res, method: str) -> dict[str, float]:
    return {t: res.get(method, t, "cosine_hw") for t in res.layers + ["all"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--st-samples", type=int, default=16)
    ap.add_argument("--min-samples", type=int, default=10)
    ap.add_argument("--baseline-draws", type=int, default=10, help="0: skip the baseline")
    ap.add_argument("--seed", type=int, default=1, help="seed of the draws (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stbin.analysis import gradient_quality, reference
    from stbin.analysis.chain import parse_chain
    from stbin.analysis.control_variates import method_sample
    from stbin.analysis.gradient_estimators import parse_method
    from stbin.training.gradient_quality import load_model_and_batch

    model, x, y = load_model_and_batch(args.checkpoint, args.batch)
    chain = parse_chain(model)
    g = torch.Generator().manual_seed(0)
    le = per_sample(lambda: reference.reference_sample(chain, loss, x, y, "local_expectation", g), 3)
    reference.SPARSE_FLIPS = False
    rows = per_sample(lambda: reference.reference_sample(chain, loss, x, y, "local_expectation", g), 1)
    reference.SPARSE_FLIPS = True
    st = per_sample(lambda: method_sample(chain, loss, x, y, parse_method("st")[0], None, g, chain.params()), 5)
    print(f"per sample: local expectation {le[0]:.2f} s wall / {le[1]:.2f} s CPU (row-by-row baseline {rows[0]:.2f} s "
          f"wall / {rows[1]:.2f} s CPU: {rows[1] / le[1]:.1f}x the CPU); ST {st[0]:.3f} s wall / {st[1]:.3f} s CPU",
          flush=True)

    t0, c0 = time.perf_counter(), cpu_s()

    def progress(n: int, worst: float) -> None:
        w, c = time.perf_counter() - t0, cpu_s() - c0
        print(f"  {n} draws: largest cosine half-width {worst:.4f}, {w:.1f} s wall, {c:.1f} s CPU "
              f"({n / w:.2f} draws/s, {c / n:.2f} s CPU a draw)", flush=True)

    res = gradient_quality(model, loss, x, y, tolerance=args.tolerance, generator=torch.Generator().manual_seed(args.seed),
                           max_seconds=args.max_seconds, min_samples=args.min_samples, st_samples=args.st_samples,
                           progress=progress)
    print(res.message)
    w, c = time.perf_counter() - t0, cpu_s() - c0
    print(f"total: {w:.1f} s wall, {c:.1f} s CPU ({args.threads} threads; {res.n_samples / w:.2f} draws/s, "
          f"{c / res.n_samples:.2f} s CPU a draw)")
    hw = {m: half_widths(res, m) for m in ("st", "htanh", "tanh", "identity")}
    print("cosine half-width per layer (st / htanh / tanh / identity):")
    for t in res.layers + ["all"]:
        print(f"  {t:18s} " + " / ".join(f"{hw[m][t]:.4f}" for m in hw))
    if args.baseline_draws:
        reference.RAO_BLACKWELL = False
        t1 = time.perf_counter()
        base = gradient_quality(model, loss, x, y, tolerance=1e-9, generator=torch.Generator().manual_seed(args.seed),
                                max_samples=args.baseline_draws, min_samples=args.baseline_draws,
                                groups=min(10, args.baseline_draws), control_variate=False, st_samples=1)
        reference.RAO_BLACKWELL = True
        bhw = half_widths(base, "htanh")
        print(f"baseline (plain local expectations, {args.baseline_draws} draws, {time.perf_counter() - t1:.1f} s "
              f"wall): htanh cosine half-width per layer, and the ratio to the run above at "
              f"{res.n_samples} draws")
        for t in res.layers + ["all"]:
            same = bhw[t] * (args.baseline_draws / res.n_samples) ** 0.5  # half-widths scale as 1/sqrt(draws)
            print(f"  {t:18s} {bhw[t]:.4f}  ratio {bhw[t] / hw['htanh'][t]:.1f} (at equal draws {same / hw['htanh'][t]:.1f})")


if __name__ == "__main__":
    main()
