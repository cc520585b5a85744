#!/usr/bin/env python
"""Training-step time of stbin's binary layers against float layers and bitorch.

One *training step* is: clear the gradients, forward, backward of a fixed upstream
gradient (so the gradient w.r.t. the layer's input is computed too, as in the middle of a
network). Per shape the variants are

* ``float``       -- ``torch.nn.Linear`` / ``torch.nn.Conv2d`` alone;
* ``float+act``   -- the same layer after a float activation (``--float-act``, tanh by
  default: the mean proxy of the logistic stochastic sign), the float counterpart of a
  layer that binarizes its input;
* ``stbin``       -- ``stbin.nn.BinaryLinear`` / ``BinaryConv2d`` with Bernoulli weights
  (``weights="bernoulli"``, logistic noise, sampled anew every step) and a stochastic
  input activation (``input_quantizer=stbin.nn.StochasticSign()``), in training mode;
* ``stbin-fp``    -- the same with its products in float32 (``stbin.nn.exact_products.disabled``):
  what the exact 8-bit integer route gains, in the same run (ratio ``stbin/stbin-fp``);
* ``stbin-nt``    -- ``stbin`` with its samplers writing no int8 twins (``twin_min_numel``
  out of reach): the exact route converts both operands from float; what the twins gain, in
  the same run (ratio ``stbin/stbin-nt``);
* ``bitorch``     -- ``bitorch.layers.QLinear`` / ``QConv2d`` with sign input and weight
  quantization (bitorch's defaults: STE with gradient cancellation at 1, pad value -1),
  when bitorch is installed; otherwise that column is skipped with a message.

Convolutions are built without bias in every variant (bitorch's QConv2d has none); the
linear layers have a bias in every variant. All variants of a shape are measured in the
same run, interleaved round by round (``--repeats`` rounds, each timing every variant for
about ``--block`` seconds), so a change of machine load hits them alike; the table gives
the median time per step over the rounds and the ratios of these medians.

A **sampling-only row** (``benchmarks/bench_sampling.py``) times drawing
``--sampling-numel`` Bernoulli weights (16.8 M = 4096x4096 by default; logistic noise,
float32) against a memory copy of the same bytes and against the sampler stbin used before
its Philox stream (``benchmarks/previous_sampler.py``), all interleaved in the same run; it
reports weights per second and the ratios (variants: see that module).

Usage::

    python benchmarks/bench_layers.py                 # full run, torch's default threads
    python benchmarks/bench_layers.py --quick         # small shapes, few rounds (smoke test)
    python benchmarks/bench_layers.py --threads 1 --clock cpu --markdown --json layers.json

``--clock cpu`` (with ``--threads 1``) times the CPU time of the benchmarking process, which
other processes on a shared machine do not inflate; the figures and the command behind
them are in ``docs/performance-layers.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from _bitorch import bitorch_layer, load_bitorch  # this folder's helper: the bitorch baseline

try:
    import stbin.nn as snn
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import stbin.nn as snn

TARGET_RATIO = 1.15  # the bar: a training step within 1.15x of the float layer


# -- shapes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    kind: str  # "linear" or "conv"
    batch: int
    c_in: int
    c_out: int
    spatial: int = 0  # H = W for convolutions
    kernel: int = 3

    @property
    def label(self) -> str:
        if self.kind == "linear":
            return f"Linear {self.c_in}->{self.c_out}, batch {self.batch}"
        k = self.kernel
        return f"Conv2d {self.c_in}->{self.c_out} {k}x{k}, {self.spatial}x{self.spatial}, batch {self.batch}"

    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.batch, self.c_in)
        return (self.batch, self.c_in, self.spatial, self.spatial)


FULL_SHAPES = [
    Shape("linear", 256, 1024, 1024),       # MLP hidden layer
    Shape("linear", 64, 4096, 4096),        # wide layer, small batch: weight sampling dominates
    Shape("conv", 32, 64, 64, 16),          # small conv block
    Shape("conv", 32, 128, 128, 32, 3),     # ResNet-style CIFAR stage
    Shape("conv", 32, 256, 256, 8, 3),      # late stage: many weights, small maps
]
QUICK_SHAPES = [
    Shape("linear", 64, 256, 256),
    Shape("conv", 8, 32, 32, 16),
]


# -- layers ---------------------------------------------------------------------------------
class Within(nn.Module):
    """``module`` run inside the context ``make_context()``: a variant of the stbin layer measured in the same run."""

    def __init__(self, module: nn.Module, make_context: Callable[[], contextlib.AbstractContextManager]) -> None:
        super().__init__()
        self.module, self.make_context = module, make_context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.make_context():
            return self.module(x)


def float_products() -> contextlib.AbstractContextManager:
    """Products in float32 (``stbin.nn.exact_products.disabled``): stbin before the exact 8-bit integer route."""
    from stbin.nn import exact_products  # noqa: PLC0415
    return exact_products.disabled()


def no_twins() -> contextlib.AbstractContextManager:
    """Samplers that write no int8 twin (:mod:`stbin.estimators._twins`): the exact products convert their
    operands from float, as before the twins."""
    from stbin.estimators._common import path_thresholds  # noqa: PLC0415
    return path_thresholds(twin_min_numel=1 << 62)


def float_layer(s: Shape) -> nn.Module:
    if s.kind == "linear":
        return nn.Linear(s.c_in, s.c_out)
    return nn.Conv2d(s.c_in, s.c_out, s.kernel, padding=s.kernel // 2, bias=False)


def float_act(name: str) -> nn.Module:
    return {"tanh": nn.Tanh, "hardtanh": nn.Hardtanh, "relu": nn.ReLU}[name]()


def stbin_layer(s: Shape) -> nn.Module:
    q = snn.StochasticSign("logistic", scale=1.0)
    if s.kind == "linear":
        return snn.BinaryLinear(s.c_in, s.c_out, weights="bernoulli", input_quantizer=q)
    return snn.BinaryConv2d(s.c_in, s.c_out, s.kernel, padding=s.kernel // 2, bias=False,
                            weights="bernoulli", input_quantizer=q)


# -- timing ---------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)  # seconds per step, one per round
    inner: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def make_step(model: nn.Module, x: torch.Tensor, gy: torch.Tensor) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        x.grad = None
        for p in params:
            p.grad = None
        model(x).backward(gy)

    return step


# "cpu": CPU time of the whole process (all its threads: numba's included), which other
# processes on a busy machine do not inflate; with one thread it is the work done.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


_SYNC: list[Callable[[], None]] = []  # torch.cuda.synchronize when timing on CUDA


def time_block(step: Callable[[], None], n: int, clock: Callable[[], float] = time.perf_counter) -> float:
    for sync in _SYNC:
        sync()
    t0 = clock()
    for _ in range(n):
        step()
    for sync in _SYNC:
        sync()
    return (clock() - t0) / n


def bench_shape(s: Shape, variants: dict[str, nn.Module], repeats: int, block: float, warmup: int,
                seed: int, clock: Callable[[], float] = time.perf_counter) -> list[Variant]:
    torch.manual_seed(seed)
    device = next(next(iter(variants.values())).parameters()).device
    x = torch.randn(s.input_shape(), device=device, requires_grad=True)
    with torch.no_grad():
        gy = torch.randn_like(next(iter(variants.values()))(x))
    out = []
    for name, model in variants.items():
        model.train()
        v = Variant(name, make_step(model, x, gy))
        for _ in range(warmup):
            v.step()
        once = min(time_block(v.step, 1, clock) for _ in range(2))
        v.inner = max(1, int(block / max(once, 1e-6)))
        out.append(v)
    for r in range(repeats):
        # rotate the order each round so no variant always runs right after another
        k = r % len(out)
        for v in out[k:] + out[:k]:
            v.times.append(time_block(v.step, v.inner, clock))
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def format_table(results: list[dict], markdown: bool = False) -> str:
    """The results as a plain-text (or Markdown) table: times in ms, then the ratios."""
    cols = ["float", "float+act", "stbin", "stbin-fp", "stbin-nt", "bitorch"]
    ratios = ["stbin/float", "stbin/float+act", "stbin/stbin-fp", "stbin/stbin-nt", "stbin/bitorch"]
    rows = [[r["shape"], *(f"{r[c + '_ms']:.2f}" if c + "_ms" in r else "-" for c in cols),
             *(f"{r[q]:.2f}" if q in r else "-" for q in ratios)] for r in results]
    head = ["shape", *(c + " ms" for c in cols), *ratios]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    return "\n".join(out + [fmt.format(*r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes and few rounds (smoke test)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch intra-op threads (default: torch's, here {torch.get_num_threads()})")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved rounds per shape (default 11, quick 3)")
    p.add_argument("--block", type=float, default=None,
                   help="seconds per variant per round (default 0.5, quick 0.05)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: elapsed time (default); cpu: CPU time of the calling thread, which other "
                        "processes on a busy machine do not inflate (needs --threads 1)")
    p.add_argument("--float-act", choices=["tanh", "hardtanh", "relu"], default="tanh",
                   help="activation of the float+act baseline")
    p.add_argument("--no-bitorch", action="store_true", help="skip bitorch even if installed")
    p.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the layers run "
                   "(the sampling-only row is a CPU measurement and is skipped on cuda)")
    p.add_argument("--sampling-numel", type=int, default=4096 * 4096,
                   help="weights in the sampling-only row (default 16.8 M; quick 1 M)")
    p.add_argument("--no-sampling", action="store_true", help="skip the sampling-only row")
    p.add_argument("--only-sampling", action="store_true", help="run only the sampling-only row")
    args = p.parse_args(argv)

    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        p.error("--clock cpu measures the calling thread only: use it with --threads 1")
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 11)
    block = args.block if args.block is not None else (0.05 if args.quick else 0.5)
    if repeats < 1 or block <= 0:
        p.error("--repeats must be >= 1 and --block > 0")
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES

    bl, bitorch_info = (None, "disabled by --no-bitorch") if args.no_bitorch else load_bitorch()
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "python": platform.python_version(),
        "bitorch": bitorch_info if bl is not None else None,
        "repeats": repeats,
        "block_s": block,
        "float_act": args.float_act,
        "clock": args.clock,
        "loadavg": _loadavg(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    print(f"torch {env['torch']}, {env['threads']} thread(s), {env['cpu_count']} CPU(s), "
          f"{env['processor']}, python {env['python']}, load average {env['loadavg']}")
    if bl is None:
        print(f"bitorch: not available ({bitorch_info}); the bitorch column is skipped. "
              "Install it with: pip install --no-deps bitorch pandas")
    else:
        print(f"bitorch {bitorch_info}: QLinear/QConv2d, sign input and weight quantization")
    print(f"training step = zero grads + forward + backward (input grad included); median of {repeats} "
          f"interleaved rounds of ~{block:g}s per variant; {args.clock} clock\n")

    if args.device != "cpu":
        if not (args.device.startswith("cuda") and torch.cuda.is_available()):
            p.error(f"--device {args.device}: only cpu, or cuda where torch.cuda.is_available()")
        _SYNC.append(torch.cuda.synchronize)
        if args.clock == "cpu":
            p.error("--clock cpu does not measure GPU work: use --clock wall with --device cuda")
    sampling = None
    if not args.no_sampling and args.device == "cpu":
        numel = args.sampling_numel if not args.quick else min(args.sampling_numel, 1 << 20)
        if numel < 1:
            p.error("--sampling-numel must be >= 1")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_sampling import bench_sampling, format_sampling  # noqa: PLC0415

        sampling = bench_sampling(numel, repeats, block, CLOCKS[args.clock])
        print(format_sampling(sampling) + "\n", flush=True)
    results = []
    for s in ([] if args.only_sampling else shapes):
        variants: dict[str, nn.Module] = {
            "float": float_layer(s),
            "float+act": nn.Sequential(float_act(args.float_act), float_layer(s)),
            "stbin": stbin_layer(s),
            "stbin-fp": Within(stbin_layer(s), float_products),
            "stbin-nt": Within(stbin_layer(s), no_twins),
        }
        if bl is not None:
            variants["bitorch"] = bitorch_layer(bl, s)
        variants = {k: m.to(args.device) for k, m in variants.items()}
        vs = {v.name: v for v in bench_shape(s, variants, repeats, block, args.warmup, args.seed,
                                             CLOCKS[args.clock])}
        row = {"shape": s.label, **{f"{k}_ms": v.median * 1e3 for k, v in vs.items()},
               **{f"{k}_best_ms": v.best * 1e3 for k, v in vs.items()}}
        st = vs["stbin"].median
        row["stbin/float"] = st / vs["float"].median
        row["stbin/float+act"] = st / vs["float+act"].median
        row["stbin/stbin-fp"] = st / vs["stbin-fp"].median
        row["stbin/stbin-nt"] = st / vs["stbin-nt"].median
        if "bitorch" in vs:
            row["stbin/bitorch"] = st / vs["bitorch"].median
        results.append(row)
        cols = " ".join(f"{k}={v.median * 1e3:.2f}ms" for k, v in vs.items())
        print(f"  measured {s.label}: {cols}", flush=True)

    print("\ntime per training step in ms (median); ratios of medians")
    print(format_table(results, markdown=args.markdown))
    if sampling is not None:
        print("\n" + format_sampling(sampling))
    within = [r for r in results if r["stbin/float"] <= TARGET_RATIO]
    print(f"\nstbin within {TARGET_RATIO}x of the float layer: {len(within)}/{len(results)} shapes")
    if bl is not None:
        faster = [r for r in results if r["stbin/bitorch"] <= 1.0]
        print(f"stbin no slower than bitorch: {len(faster)}/{len(results)} shapes")

    env["loadavg_after"] = _loadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": results, "sampling": sampling}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
