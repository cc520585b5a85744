"""``stbin gradient-quality``: how close ST and the deterministic proxies come to the true gradient of a
trained network, per layer, over the checkpoints of a run.

Examples::

    stbin gradient-quality runs/sbn_mnist                       # every checkpoint of the run
    stbin gradient-quality runs/sbn_mnist/checkpoint-epoch0004.pt --tolerance 0.05
    stbin gradient-quality runs/sbn_mnist --epochs 1,4 --methods st,htanh --max-seconds 600
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from stbin._validation import check_threads

DESCRIPTION = """\
Evaluate one checkpoint, or every checkpoint of a training run, on a fixed batch (the first
--batch test images of the run's dataset): for every layer and method, the cosine of a
single-sample gradient estimate to the true gradient of the expected loss, its relative
bias and relative RMSE, each with a 95% interval. The true gradient is estimated without
bias by local expectations (two-state evaluations of every stochastic unit and Bernoulli
weight) or DisARM, with the cheap ST estimator on the same sample as a control variate, with
as many samples as the --tolerance on the cosine's interval needs (or until --max-samples /
--max-seconds, which the report then says).

Writes into --out: report.md (one table per checkpoint), quality.csv and quality.png
(cosine and relative bias per layer against the epoch). Supports any model built from stbin
layers (MLPs, LeNet-5, conv and residual nets, binarize-converted modules); batch norm uses
its running statistics.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gradient-quality", help="per-layer quality of ST gradients in a trained network",
                              description=DESCRIPTION, epilog=__doc__.split("Examples::", 1)[1].replace("\n    ", "\n  "),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="RUN_OR_CHECKPOINT", help="a run folder (every checkpoint-epoch*.pt) or one checkpoint")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: RUN/gradient-quality)")
    p.add_argument("--epochs", default=None, metavar="E1,E2,...", help="only these epochs of a run folder")
    p.add_argument("--methods", default="st,htanh,tanh,identity", metavar="M1,M2,...",
                   help="gradient estimators to compare (default: %(default)s)")
    p.add_argument("--reference", default="local_expectation", help="local_expectation (default) or disarm")
    p.add_argument("--tolerance", type=float, default=0.02, help="target half-width of the cosine intervals")
    p.add_argument("--batch", type=int, default=100, help="test images in the fixed batch (default 100)")
    p.add_argument("--max-samples", type=int, default=2000, help="budget: reference samples per checkpoint")
    p.add_argument("--max-seconds", type=float, default=None, help="budget: seconds per checkpoint")
    p.add_argument("--st-samples", type=int, default=16,
                   help="single-sample estimates of every random method per reference sample; with the control "
                        "variate, ST's also estimate E[ST] (default 16)")
    p.add_argument("--no-control-variate", action="store_true",
                   help="plain reference samples, without the ST control variate (slower to converge)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument("--data-root", default=None, help="folder of the data files (default: the run's)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-plot", action="store_true", help="write the report without the plot (no matplotlib needed)")
    return p


def _checkpoints(path: Path, epochs: str | None) -> list[tuple[int, Path]]:
    from stbin.training.trainer import find_checkpoints
    if path.is_file():
        if epochs is not None:
            raise ValueError("--epochs selects checkpoints of a run folder; RUN_OR_CHECKPOINT is a file")
        return [(-1, path)]
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder or checkpoint at {path}")
    found = {}
    for c in find_checkpoints(path):
        digits = c.stem.removeprefix("checkpoint-epoch")
        if digits.isdigit():
            found[int(digits)] = c
    if not found:
        raise ValueError(f"no checkpoint-epoch*.pt in {path}")
    if epochs is not None:
        try:
            want = sorted({int(e) for e in epochs.split(",") if e.strip()})
        except ValueError:
            raise ValueError(f"--epochs must be comma-separated integers, got {epochs!r}") from None
        missing = [e for e in want if e not in found]
        if not want or missing:
            raise ValueError(f"--epochs {epochs}: no checkpoint for epoch(s) {missing or want}; the run has "
                             f"{', '.join(map(str, sorted(found)))}")
        return [(e, found[e]) for e in want]
    return sorted(found.items())


def _validate(args: argparse.Namespace) -> list[str]:
    from stbin.analysis.quality import _resolve
    from stbin.analysis.reference import REFERENCES
    if not (0 < args.tolerance < 2):
        raise ValueError(f"--tolerance must be in (0, 2), got {args.tolerance}")
    for name, v, lo in (("--batch", args.batch, 1), ("--max-samples", args.max_samples, 10),
                         ("--st-samples", args.st_samples, 1)):
        if v < lo:
            raise ValueError(f"{name} must be at least {lo}, got {v}")
    check_threads("--threads", args.threads)
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ValueError(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.reference not in REFERENCES:
        raise ValueError(f"--reference must be one of {', '.join(REFERENCES)}, got {args.reference!r}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    _resolve(methods)
    if not args.no_plot:  # checked before any work
        from stbin.reporting import require_matplotlib
        require_matplotlib("the plot of the gradient quality", alternative="--no-plot")
    return methods


def run(args: argparse.Namespace) -> int:
    methods = _validate(args)
    path = Path(args.path)
    ckpts = _checkpoints(path, args.epochs)
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent) / "gradient-quality"
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise OSError(f"output folder is not writable: {out}")

    import torch

    from stbin.analysis import gradient_quality
    from stbin.analysis import quality_report as qr
    from stbin.training.checkpoint import load_checkpoint
    from stbin.training.gradient_quality import cross_entropy, fixed_batch, load_model

    torch.set_num_threads(args.threads)
    results = []
    for ep, c in ckpts:
        ckpt = load_checkpoint(c)
        epoch = int(ckpt.get("epoch", ep)) if ep < 0 else ep
        model = load_model(ckpt)
        x, y = fixed_batch(ckpt, args.batch, args.data_root)

        def progress(n: int, worst: float, epoch: int = epoch) -> None:
            print(f"  epoch {epoch}: {n} reference samples, largest cosine half-width {worst:.3f}", file=sys.stderr)

        res = gradient_quality(model, cross_entropy, x, y, methods=methods, reference=args.reference,
                               tolerance=args.tolerance, generator=torch.Generator().manual_seed(args.seed),
                               max_samples=args.max_samples, max_seconds=args.max_seconds, progress=progress,
                               control_variate=not args.no_control_variate, st_samples=args.st_samples)
        results.append((epoch, res))
        print(f"epoch {epoch}: {res.message}")
    command = "stbin gradient-quality " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 \
        else f"stbin gradient-quality {args.path}"
    csv_path = qr.write_csv(results, out / "quality.csv")
    fig = None if args.no_plot else str(qr.plot(results, out / "quality.png"))
    report = qr.write_report(results, out, command, str(args.path), args.batch, fig)
    for p in [report, csv_path] + ([fig] if fig else []):
        print(f"  wrote {p}")
    return 0
