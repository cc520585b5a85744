"""Training throughput (images/s) of each preset's model against its float twin.

The float twin is the same architecture with ReLU units and real weights
(:func:`stbin.training.presets.float_twin`). A training step is the trainer's: forward,
cross-entropy, backward, optimizer step with the latent-weight rule. Inputs are random
tensors of the dataset's shape (throughput does not depend on the pixel values; CIFAR-10 is
not available offline). The variants' steps are interleaved in short blocks (``--repeats``
rounds of about ``--min-time`` seconds per variant) and the median over the rounds is
reported, so that load from other processes affects all variants alike (many short rounds
follow a changing load more closely than a few long ones).

    python benchmarks/bench_training.py [--presets sbn_mnist,lenet5_mnist] [--threads 1] [--out FILE.md]
        [--clock cpu] [--compile] [--torch-sign] [--batch N|preset] [--repeats 15] [--min-time 0.2]

``--clock cpu`` times the CPU time of the process (all threads), which other processes on a
busy machine do not inflate (use it with ``--threads 1``). ``--batch`` sets the images per
step of every preset (``preset``: the preset's own training batch, 128 for the CIFAR
presets); by default the MNIST presets use theirs (100) and the CIFAR presets 16, which
keeps a CIFAR step under a second on one core.

``--torch-sign`` adds a variant: the binary model (same initialisation) with the
deterministic sign and its htanh backward computed by torch's elementwise operations
instead of stbin's one-pass kernels (the code before them), and the ratio kernels / torch.
``--compile`` adds the binary model's step compiled with ``torch.compile`` (CPU inductor;
forward, loss and backward in the compiled function, the optimizer step eager) with the
ratio compiled / eager, and the float twin compiled the same way with the ratio of the two
compiled steps (binary / float). Compiling takes minutes per model on a loaded machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from stbin.cli.summary import INPUT_SHAPES
from stbin.estimators._common import path_thresholds
from stbin.models import build_model
from stbin.training.presets import float_twin, get_preset
from stbin.training.trainer import build_optimizer, model_kwargs_for

DEFAULT_PRESETS = ["sbn_mnist", "lenet5_mnist", "sbn_conv_cifar10", "binarynet_cifar10", "vgg11_cifar10",
                   "resnet20_cifar10"]
# images per step: the preset's batch for the small nets; fewer for the big CIFAR nets on a CPU
BATCH = {"sbn_mnist": 100, "lenet5_mnist": 100}


def step_parts(cfg, shape, batch):
    """(model in training mode, its optimizer, a batch x, labels y) of the preset ``cfg``, seeded."""
    name, kw = model_kwargs_for(cfg, shape, 10)
    torch.manual_seed(0)
    model = build_model(name, **kw).train()
    opt, _ = build_optimizer(model, cfg)
    return model, opt, torch.randn(batch, *shape), torch.randint(10, (batch,))


def make_step(cfg, shape, batch, compiled=False):
    model, opt, x, y = step_parts(cfg, shape, batch)

    def fwd_bwd(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    # static shapes: every model here is compiled for its one input shape (dynamo would otherwise turn the
    # shapes of a code object compiled again for another model into symbolic ones)
    run = torch.compile(fwd_bwd, dynamic=False) if compiled else fwd_bwd

    def step():
        opt.zero_grad(set_to_none=True)
        run(x, y)
        opt.step()
    return step


CLOCK = [time.perf_counter]


def time_steps(step, n):
    clock = CLOCK[0]
    t = clock()
    for _ in range(n):
        step()
    return clock() - t


def torch_sign_step(step):
    """``step`` with the sign and its htanh backward on torch's operations (the one-pass kernels off)."""
    def run():
        with path_thresholds(elementwise_kernel_min_numel=1 << 62):
            step()
    return run


def batch_size(preset, cfg, batch=None):
    """Images per step: ``batch`` (an int), the preset's own (``"preset"``) or the default table."""
    if batch == "preset":
        return int(cfg.train.batch_size)
    return int(batch) if batch is not None else BATCH.get(preset, 16)


def bench(preset, repeats, min_time, compiled=False, torch_sign=False, batch=None):
    cfg = get_preset(preset)
    shape = INPUT_SHAPES[cfg.data.name]
    batch = batch_size(preset, cfg, batch)
    steps = {"binary": make_step(cfg, shape, batch), "float": make_step(float_twin(cfg), shape, batch)}
    if compiled:
        torch._dynamo.reset()  # the compiled steps of earlier presets: no recompile limit shared with them
        steps["compiled"] = make_step(cfg, shape, batch, compiled=True)
        steps["float_compiled"] = make_step(float_twin(cfg), shape, batch, compiled=True)
    if torch_sign:
        steps["torch_sign"] = torch_sign_step(make_step(cfg, shape, batch))
    n = {}
    for k, s in steps.items():  # warm-up and choose steps per repeat
        s()
        t1 = time_steps(s, 1)
        n[k] = max(1, int(min_time / max(t1, 1e-4)))
    rates = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            rates[k].append(n[k] * batch / time_steps(s, n[k]))
    b, f = statistics.median(rates["binary"]), statistics.median(rates["float"])
    row = {"preset": preset, "model": cfg.model["name"], "shape": "x".join(map(str, shape)), "batch": batch,
           "binary": b, "float": f, "ratio": b / f}
    if compiled:
        row["compiled"] = statistics.median(rates["compiled"])
        row["compiled/eager"] = row["compiled"] / b
        row["float_compiled"] = statistics.median(rates["float_compiled"])
        row["compiled_ratio"] = row["compiled"] / row["float_compiled"]
    if torch_sign:
        row["torch_sign"] = statistics.median(rates["torch_sign"])
        row["kernels/torch_sign"] = b / row["torch_sign"]
    return row


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _batch_arg(text):
    return "preset" if text == "preset" else _positive_int(text)


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (what is wrong and what is expected), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None) -> int:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    p.add_argument("--threads", type=_positive_int, default=1)
    p.add_argument("--repeats", type=_positive_int, default=15, help="rounds of interleaved blocks (default 15)")
    p.add_argument("--min-time", type=_positive_float, default=0.2,
                   help="seconds per block: per round and variant (approx.; default 0.2)")
    p.add_argument("--batch", type=_batch_arg, default=None,
                   help="images per step for every preset: a positive int or 'preset' (the preset's training "
                        "batch); default: 100 for the MNIST presets, 16 for the CIFAR ones")
    p.add_argument("--out", help="also write the Markdown table to this file")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall (default) or cpu: CPU time of the process (use with --threads 1 on a busy machine)")
    p.add_argument("--compile", action="store_true", help="also time the binary step under torch.compile")
    p.add_argument("--torch-sign", action="store_true",
                   help="also time the binary step with the sign and htanh backward by torch's operations "
                        "(not the one-pass kernels), interleaved")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.clock == "cpu":
        CLOCK[0] = time.process_time
    more = {"batch": a.batch} if a.batch is not None else {}
    rows = []
    for name in (name.strip() for name in a.presets.split(",") if name.strip()):
        try:
            rows.append(bench(name, a.repeats, a.min_time, a.compile, a.torch_sign, **more))
        except ValueError as e:  # an unknown preset: one line, exit status 2
            p.error(f"--presets: {e}")
    extra = (" compiled (img/s) | compiled / eager | float compiled (img/s) | compiled binary / float |"
             if a.compile else "")
    extra += " binary, torch sign (img/s) | kernels / torch sign |" if a.torch_sign else ""
    lines = [f"Training throughput, torch {torch.__version__}, {a.threads} thread(s), {a.clock} clock, "
             f"{platform.processor() or platform.machine()}",
             "", "| preset | model | input | batch | binary (img/s) | float twin (img/s) | binary / float |" + extra,
             "|---|---|---|--:|--:|--:|--:|" + ("--:|--:|--:|--:|" if a.compile else "")
             + ("--:|--:|" if a.torch_sign else "")]
    for r in rows:
        cols = (f" {r['compiled']:.0f} | {r['compiled/eager']:.2f} | {r['float_compiled']:.0f} | "
                f"{r['compiled_ratio']:.2f} |" if a.compile else "")
        cols += f" {r['torch_sign']:.0f} | {r['kernels/torch_sign']:.2f} |" if a.torch_sign else ""
        lines.append(f"| {r['preset']} | {r['model']} | {r['shape']} | {r['batch']} | {r['binary']:.0f} | "
                     f"{r['float']:.0f} | {r['ratio']:.2f} |" + cols)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
