#!/usr/bin/env python
"""Training steps of binary layers with the CPU kernels' parallel loops from 32 K elements (the fixed threshold stbin
used before) against the threshold measured from this machine's thread wake-up (``stbin.estimators._parallel_cost``),
interleaved in one process.

Per layer, each round times ``--steps`` training steps (zero_grad, forward, backward of a fixed upstream gradient)
with each threshold, after two untimed ones; medians over ``--rounds`` rounds. The samples do not depend on the
threshold (both loops give the same numbers), only the time does.

    python benchmarks/bench_parallel_threshold.py
    python benchmarks/bench_parallel_threshold.py --threads 2 --rounds 12 --steps 5
    python benchmarks/bench_parallel_threshold.py --presets sbn_mnist,resnet20_cifar10   # also whole training steps

``--presets``: also the training step of each preset's model (``benchmarks/bench_training.py``'s step: its batch
of 100 for the MNIST presets, 16 for the CIFAR ones), timed the same way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

# this folder's benchmarks: their layers, shapes, training steps and argument check
from bench_layers import FULL_SHAPES, make_step, stbin_layer
from bench_training import INPUT_SHAPES, _positive_int, batch_size
from bench_training import make_step as preset_step

from stbin.estimators import _parallel_cost
from stbin.estimators._common import THRESHOLDS
from stbin.training.presets import get_preset

#: the shapes of ``bench_layers.py`` timed here (its table's first, third and fifth rows)
SHAPES = [FULL_SHAPES[0], FULL_SHAPES[2], FULL_SHAPES[4]]


def _layer_step(shape) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """``bench_layers.py``'s training step of its stbin layer for ``shape``."""
    layer = stbin_layer(shape).train()
    x = torch.randn(*shape.input_shape(), requires_grad=True)
    return make_step(layer, x, torch.randn_like(layer(x)))


def _preset_step(preset: str) -> Callable[[], None]:
    """The training step of ``bench_training.py`` for ``preset`` (its default batch)."""
    cfg = get_preset(preset)
    return preset_step(cfg, INPUT_SHAPES[cfg.data.name], batch_size(preset, cfg))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=_positive_int, default=2, help="torch (and numba) threads (default 2)")
    p.add_argument("--rounds", type=_positive_int, default=12, help="interleaved rounds (default 12)")
    p.add_argument("--steps", type=_positive_int, default=5, help="timed steps per round and threshold (default 5)")
    p.add_argument("--presets", default="", help="comma-separated training presets to time as well (default: none)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = {f"Binary{shape.label}": _layer_step(shape) for shape in SHAPES}
    steps.update({f"{name} training step": _preset_step(name) for name in filter(None, args.presets.split(","))})
    saved = THRESHOLDS.parallel_sampling_min_numel
    print(f"{args.threads} threads; measured threshold: "
          f"{_parallel_cost.parallel_min_numel(args.threads)} elements (sampling), "
          f"{_parallel_cost.parallel_min_numel(args.threads, _parallel_cost.ELEMENTWISE_SECONDS)} (elementwise)")
    print("| step | 32 K ms | measured ms | 32 K / measured |\n|---|--:|--:|--:|")
    try:
        for name, step in steps.items():
            times: dict[str, list[float]] = {"32K": [], "measured": []}
            for _ in range(args.rounds):
                for key, value in (("32K", 1 << 15), ("measured", None)):
                    THRESHOLDS.parallel_sampling_min_numel = value
                    for _ in range(2):
                        step()
                    t = time.perf_counter()
                    for _ in range(args.steps):
                        step()
                    times[key].append((time.perf_counter() - t) / args.steps)
            a, b = statistics.median(times["32K"]), statistics.median(times["measured"])
            print(f"| {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.3f} |")
    finally:
        THRESHOLDS.parallel_sampling_min_numel = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
