"""``stbin theory``: the coarse-gradient theory lab (Yin et al., ICLR 2019) as a Markdown report with plots."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Check the coarse-gradient theory of Yin et al. ("Understanding Straight-Through Estimator
in Training Activation Quantized Neural Nets", ICLR 2019) on its two-linear-layer network
with a binarized ReLU and write a Markdown report with PNG plots:

  (a) closed forms (loss, gradient, expected coarse gradients of the identity, ReLU and
      clipped-ReLU STEs) against Monte Carlo, with errors and standard errors;
  (b) coarse gradient descent with each STE from random starts and from near the
      spurious minimiser (loss, angle and ||w|| per iteration; learning-rate sweep);
  (c) the one-step change of the empirical loss against the learning rate for several
      sample sizes;
  (d) <E g, df/dw> against the angle for each STE.

Output: OUT/report.md, OUT/*.png. --quick is a smoke run of about 10 s.
Plots need matplotlib: pip install 'stbin[reports]'; --no-plots writes the text alone.

examples:
  stbin theory                         # full run into runs/theory (a few minutes)
  stbin theory --quick --out /tmp/th   # smoke run (about 10 s)
  stbin theory --m 8 --n 16 --samples 200000 --seed 3
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "theory",
        help="coarse-gradient theory lab (Yin et al. 2019): closed forms vs Monte Carlo, STE descent; Markdown report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/theory", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes everywhere (about 10 s on 2 CPU cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the whole run (default: %(default)s)")
    p.add_argument("--m", type=int, default=None, metavar="M", help="rows of Z / length of v (default 5; >= 2)")
    p.add_argument("--n", type=int, default=None, metavar="N", help="columns of Z / length of w (default 8; >= 2)")
    p.add_argument("--samples", type=int, default=None, metavar="S",
                   help="Monte Carlo samples per check in (a) (default 1000000; --quick 20000)")
    p.add_argument("--steps", type=int, default=None, help="descent iterations in (b) (default 3000; --quick 400)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the main descent runs (default 0.1)")
    p.add_argument("--starts", type=int, default=None, help="random starting points in (b) (default 5; --quick 2)")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.add_argument("--no-plots", action="store_true", help="write the report without figures (no matplotlib needed)")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stbin.cli.main import UsageError
    from stbin.theory.report import TheoryConfig, run_report

    for name, minimum in (("m", 2), ("n", 2), ("samples", 1), ("steps", 1), ("starts", 1)):
        val = getattr(args, name)
        if val is not None and val < minimum:
            raise ValueError(f"--{name} must be >= {minimum}, got {val}")
    if args.lr is not None and not (0 < args.lr < float("inf")):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    cfg = TheoryConfig.preset(
        quick=args.quick, m=args.m, n=args.n, samples=args.samples, steps=args.steps, lr=args.lr,
        starts=args.starts, seed=args.seed,
    )
    cfg.validate()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    from stbin.theory.descent import DescentDiverged

    try:
        path = run_report(cfg, out, progress=False if args.no_progress else None, plots=not args.no_plots)
    except DescentDiverged as e:  # the step is too large for the problem's size: say which option to change
        raise ValueError(f"{e}: pass a smaller --lr (now {cfg.lr:g}) or smaller --m / --n "
                         f"(now {cfg.m} / {cfg.n})") from None
    print(f"wrote {path}" + ("" if args.no_plots else " and its plots"))
    return 0
