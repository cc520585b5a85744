"""Timings of stbin.theory.two_layer (the two-layer binarized-ReLU model of Yin et al., ICLR 2019).

* Monte Carlo coarse gradient: 10^6 samples at m = 5, n = 8, each STE (target < 2 s);
* closed forms at m = n = 1000 (loss, gradient, expected coarse gradients, correlation,
  critical points) and at m = 5, n = 8;
* one full-batch coarse-gradient-descent step.

Usage: python benchmarks/bench_theory.py [--repeat R] [--samples S] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stbin.theory import two_layer as tl  # noqa: E402


def best_of(fn: Callable[[], object], repeat: int, number: int = 1) -> float:
    """Best wall time per call over ``repeat`` rounds of ``number`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def problem(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(m), rng.standard_normal(n), rng.standard_normal(m), rng.standard_normal(n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args()

    rows: list[tuple[str, str]] = []
    v, w, vs, ws = problem(5, 8)
    for ste in tl.STES:
        t = best_of(lambda: tl.sample_coarse_gradient_stats(v, w, vs, ws, ste, args.samples, generator=0), args.repeat)
        rows.append((f"Monte Carlo, {args.samples:.0e} samples, m=5, n=8, {ste} (with s.e.)", f"{t:.3f} s"))
    chunk = tl._default_chunk(5, 8)
    rows.append(("Monte Carlo chunk (samples / buffer)", f"{chunk} / {chunk * 5 * 8 * 8 / 2**20:.1f} MiB"))

    for m, n in ((5, 8), (1000, 1000)):
        v, w, vs, ws = problem(m, n)
        number = 2000 if m < 100 else 500
        rows.append((f"population_loss, m={m}, n={n}", f"{best_of(lambda: tl.population_loss(v, w, vs, ws), args.repeat, number) * 1e6:.1f} us"))
        rows.append((f"population_gradient, m={m}, n={n}", f"{best_of(lambda: tl.population_gradient(v, w, vs, ws), args.repeat, number) * 1e6:.1f} us"))
        for ste in tl.STES:
            t = best_of(lambda: tl.expected_coarse_gradient(v, w, vs, ws, ste), args.repeat, number)
            rows.append((f"expected_coarse_gradient {ste}, m={m}, n={n}", f"{t * 1e6:.1f} us"))
        t = best_of(lambda: tl.coarse_correlation(v, w, vs, ws, "clipped_relu"), args.repeat, number)
        rows.append((f"coarse_correlation clipped_relu, m={m}, n={n}", f"{t * 1e6:.1f} us"))
        t = best_of(lambda: tl.critical_points(vs, ws), args.repeat, number)
        rows.append((f"critical_points, m={m}, n={n}", f"{t * 1e6:.1f} us"))
        t = best_of(lambda: tl.coarse_gradient_descent(v, w, vs, ws, "relu", 0.01, 200), args.repeat) / 201
        rows.append((f"coarse_gradient_descent per step (expected, relu), m={m}, n={n}", f"{t * 1e6:.1f} us"))

    head = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, NumPy {np.__version__}; best of {args.repeat}.")
    lines = [head, "", "| what | time |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
