"""Where a binary training step spends its extra time: the estimator calls, timed inside the step.

For each preset, the binary step of ``bench_training.py`` (same model, batch and optimizer) runs
with timers around the three estimator entry points of a stochastic binary network:

* **weight sampling** — the forward of the Bernoulli weights (``F(theta/s_w)`` and the draw; for
  sign weights, as in ``binarynet_cifar10``, the deterministic sign);
* **unit sampling** — the forward of the stochastic units (``F(a/s)`` and the draw);
* **unit ST backward** — the units' straight-through backward ``g (2/s) F'(a/s)``;

then the binary and float steps (without timers) are interleaved as in ``bench_training.py``,
and the difference of their medians is set against the three parts (the rest: Python and
autograd overhead of the extra Functions, and memory effects; the float twin's ReLU forward
and backward, which the binary step does not run, is not subtracted).

    python benchmarks/bench_training_breakdown.py [--presets sbn_mnist,resnet20_cifar10] [--steps 5]
        [--repeats 15] [--min-time 0.2] [--batch N|preset]

CPU time of the process, one thread (the trainer's default).
"""

from __future__ import annotations

import collections
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_training as bt  # noqa: E402  (the same steps, batch table and argument checks)

from stbin.cli.summary import INPUT_SHAPES  # noqa: E402
from stbin.estimators import latent, stochastic  # noqa: E402
from stbin.training.presets import float_twin, get_preset  # noqa: E402

#: (module, function, part): the functions timed inside the binary step
PARTS = ((latent, "noisy_sign", "weight sampling"), (stochastic, "noisy_sign", "unit sampling"),
         (stochastic, "_st_backward", "unit ST backward"))


@contextlib.contextmanager
def timed(totals: dict[str, float]):
    """Accumulate the CPU time of every call of :data:`PARTS` into ``totals`` (restored on exit)."""
    saved = []
    for module, name, part in PARTS:
        fn = getattr(module, name)
        saved.append((module, name, fn))

        def wrapper(*args, _fn=fn, _part=part, **kwargs):
            t = time.process_time()
            try:
                return _fn(*args, **kwargs)
            finally:
                totals[_part] += time.process_time() - t
        setattr(module, name, wrapper)
    try:
        yield totals
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def breakdown(preset: str, steps: int, repeats: int, min_time: float, batch=None) -> dict:
    """Per-step milliseconds of the binary and float steps and of each part of :data:`PARTS`."""
    cfg = get_preset(preset)
    shape = INPUT_SHAPES[cfg.data.name]
    n_img = bt.batch_size(preset, cfg, batch)
    binary, flt = bt.make_step(cfg, shape, n_img), bt.make_step(float_twin(cfg), shape, n_img)
    binary()
    totals: dict[str, float] = collections.defaultdict(float)
    with timed(totals):
        for _ in range(steps):
            binary()
    parts = {part: totals[part] / steps * 1e3 for _, _, part in PARTS}
    n = {}
    for k, s in (("binary", binary), ("float", flt)):
        s()
        t = time.process_time()
        s()
        n[k] = max(1, int(min_time / max(time.process_time() - t, 1e-4)))
    ms: dict[str, list[float]] = {"binary": [], "float": []}
    for _ in range(repeats):
        for k, s in (("binary", binary), ("float", flt)):
            t = time.process_time()
            for _ in range(n[k]):
                s()
            ms[k].append((time.process_time() - t) / n[k] * 1e3)
    b, f = statistics.median(ms["binary"]), statistics.median(ms["float"])
    return {"preset": preset, "batch": n_img, "binary": b, "float": f, "extra": b - f, **parts}


def main(argv=None) -> int:
    p = bt._Parser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=",".join(bt.DEFAULT_PRESETS))
    p.add_argument("--steps", type=bt._positive_int, default=5, help="timed binary steps (default 5)")
    p.add_argument("--repeats", type=bt._positive_int, default=15, help="rounds of interleaved blocks (default 15)")
    p.add_argument("--min-time", type=bt._positive_float, default=0.2, help="seconds per block (default 0.2)")
    p.add_argument("--batch", type=bt._batch_arg, default=None, help="as in bench_training.py")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    names = [name.strip() for name in a.presets.split(",") if name.strip()]
    for name in names:  # unknown presets are refused before any work
        try:
            get_preset(name)
        except ValueError as e:
            p.error(f"--presets: {e}")
    part_names = [part for _, _, part in PARTS]
    print("Extra time of the binary training step (ms per step, CPU time, 1 thread)\n")
    print("| preset | batch | binary | float twin | binary - float | " + " | ".join(part_names) + " | rest |")
    print("|---|--:|--:|--:|--:|" + "--:|" * (len(part_names) + 1))
    for name in names:
        r = breakdown(name, a.steps, a.repeats, a.min_time, a.batch)
        rest = r["extra"] - sum(r[part] for part in part_names)
        print(f"| {name} | {r['batch']} | {r['binary']:.2f} | {r['float']:.2f} | {r['extra']:.2f} | "
              + " | ".join(f"{r[part]:.2f}" for part in part_names) + f" | {rest:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
