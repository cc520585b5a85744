"""Where a binary training step spends its extra time: the estimator calls, timed inside the step.

For each preset, the binary step of ``bench_training.py`` (same model, batch and optimizer) runs
with timers around the three estimator entry points of a stochastic binary network:

* **weight sampling** — the forward of the Bernoulli weights (``F(theta/s_w)`` and the draw; for
  sign weights, as in ``binarynet_cifar10``, the deterministic sign);
* **unit sampling** — the forward of the stochastic units (``F(a/s)`` and the draw);
* **unit ST backward** — the units' straight-through backward ``g (2/s) F'(a/s)``;

then the binary and float steps (without those timers) are interleaved as in
``bench_training.py``, each step timed by phase — forward with the loss, backward, optimizer
step — and the difference of the medians (binary - float) is given per phase. The three parts
are set against it (the rest: Python and autograd overhead of the extra Functions, and
memory effects; the float twin's ReLU forward and backward, which the binary step does not
run, is not subtracted).

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
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_training as bt  # noqa: E402  (the same steps, batch table and argument checks)

from stbin.cli.summary import INPUT_SHAPES  # noqa: E402
from stbin.estimators import latent, stochastic  # noqa: E402
from stbin.training.presets import float_twin, get_preset  # noqa: E402

PHASES = ("forward", "backward", "optimizer")

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


def phased_step(cfg, shape, batch):
    """The step of ``bench_training.make_step`` (same model, data and optimizer), adding the CPU time
    of each phase of :data:`PHASES` to the returned dict."""
    model, opt, x, y = bt.step_parts(cfg, shape, batch)
    spent = dict.fromkeys(PHASES, 0.0)

    def step():
        t0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        t1 = time.process_time()
        loss.backward()
        t2 = time.process_time()
        opt.step()
        t3 = time.process_time()
        spent["forward"] += t1 - t0
        spent["backward"] += t2 - t1
        spent["optimizer"] += t3 - t2
    return step, spent


def breakdown(preset: str, steps: int, repeats: int, min_time: float, batch=None) -> dict:
    """Per-step milliseconds: binary and float steps, their difference per phase, each part of :data:`PARTS`."""
    cfg = get_preset(preset)
    shape = INPUT_SHAPES[cfg.data.name]
    n_img = bt.batch_size(preset, cfg, batch)
    variants = {"binary": phased_step(cfg, shape, n_img), "float": phased_step(float_twin(cfg), shape, n_img)}
    binary = variants["binary"][0]
    binary()
    totals: dict[str, float] = collections.defaultdict(float)
    with timed(totals):
        for _ in range(steps):
            binary()
    parts = {part: totals[part] / steps * 1e3 for _, _, part in PARTS}
    n = {}
    for k, (s, _) in variants.items():
        s()
        t = time.process_time()
        s()
        n[k] = max(1, int(min_time / max(time.process_time() - t, 1e-4)))
    ms: dict[str, dict[str, list[float]]] = {k: {ph: [] for ph in PHASES} for k in variants}
    for _ in range(repeats):
        for k, (s, spent) in variants.items():
            for ph in PHASES:
                spent[ph] = 0.0
            for _ in range(n[k]):
                s()
            for ph in PHASES:
                ms[k][ph].append(spent[ph] / n[k] * 1e3)
    med = {k: {ph: statistics.median(v) for ph, v in d.items()} for k, d in ms.items()}
    b, f = sum(med["binary"].values()), sum(med["float"].values())
    deltas = {ph: med["binary"][ph] - med["float"][ph] for ph in PHASES}
    return {"preset": preset, "batch": n_img, "binary": b, "float": f, "extra": b - f, **deltas, **parts}


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
    print("| preset | batch | binary | float twin | binary - float | " + " | ".join(f"{ph} Δ" for ph in PHASES)
          + " | " + " | ".join(part_names) + " | rest |")
    print("|---|--:|--:|--:|--:|" + "--:|" * (len(PHASES) + len(part_names) + 1))
    for name in names:
        r = breakdown(name, a.steps, a.repeats, a.min_time, a.batch)
        rest = r["extra"] - sum(r[part] for part in part_names)
        print(f"| {name} | {r['batch']} | {r['binary']:.2f} | {r['float']:.2f} | {r['extra']:.2f} | "
              + " | ".join(f"{r[ph]:.2f}" for ph in PHASES) + " | "
              + " | ".join(f"{r[part]:.2f}" for part in part_names) + f" | {rest:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
