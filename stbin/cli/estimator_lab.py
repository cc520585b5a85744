"""``stbin estimator-lab`` (alias ``stbin estimators``): the estimator-accuracy lab.

Trains the reference 2-5-5-5 stochastic binary network on the protocol's two-class data
(SGD on the exact expected loss), measures every gradient estimator against the exact
gradient on snapshots after 1, 100 and 2000 epochs, sweeps depth, width, noise scale and
noise family, and writes ``metrics.csv``, PNG plots and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from stbin._validation import check_threads

DESCRIPTION = """\
Measure how close each gradient estimator of a stochastic binary network is to the exact
gradient (computed by enumerating all binary states): ST with the model's noise, the
deterministic proxies htanh/tanh/identity at the mode, REINFORCE with and without a
baseline, ARM, DisARM, Concrete and straight-through Concrete (temperatures 0.1 and 1).

Reference protocol (the estimator study of Shekhovtsov, Yanush & Flach, NeurIPS 2020):
200 two-class 2-D points, a 2-5-5-5 network of logistic stochastic binary units with a linear output and logistic loss, trained with SGD (lr 0.03,
momentum 0.9, batch 10) on the exact expected loss; snapshots after 1, 100 and 2000
epochs; 20000 single-sample estimates per estimator, averaged in groups of M = 1..9000.
Then sweeps over depth, width, noise scale and noise family (fewer estimates).

Writes into --out: metrics.csv (bias, variance, relative RMSE, cosine mean and 15/85
percentiles per estimator, tensor, layer and M), estimators_epoch*.png, sweeps.png and
report.md with the headline numbers and findings computed from them.

The default run takes about 4 min on 2 CPU cores; --quick is a smoke run of about 30 s.
"""

EXAMPLES = """\
examples:
  stbin estimator-lab                         # full protocol and sweeps into runs/estimators
  stbin estimator-lab --quick --out /tmp/lab  # smoke run (about 30 s)
  stbin estimator-lab --methods st,arm,reinforce --no-sweep --estimates 5000
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimator-lab", aliases=["estimators"],
        help="estimator-accuracy lab: every gradient estimator vs the exact gradient (alias: estimators)",
        description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join("runs", "estimators"), metavar="DIR",
                   help="output folder (created if needed; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and sampling (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: snapshots 1 and 100, 1000 estimates, M <= 200, small sweeps "
                        "(about 30 s on 2 CPU cores)")
    p.add_argument("--estimates", type=int, default=None, metavar="K",
                   help="single-sample estimates per estimator and snapshot, 2 to 1000000 (default 20000; 1000 with --quick)")
    p.add_argument("--epochs", default=None, metavar="E1,E2,...",
                   help="snapshot epochs, each 0 (untrained) to 100000 (default 1,100,2000; 1,100 with --quick)")
    p.add_argument("--methods", default=None, metavar="M1,M2,...",
                   help="estimators to compare (default: all; e.g. st,det_htanh,reinforce,arm,concrete:0.1)")
    p.add_argument("--no-sweep", action="store_true", help="skip the depth/width/scale/noise sweeps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the work is many small operations, for which one "
                        "thread per process is fastest)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{what} must list at least one value, got {text!r}")
    return vals


MAX_ESTIMATES = 10 ** 6   # per estimator and snapshot: the default is 20000, and 1e6 already takes hours
MAX_EPOCH = 10 ** 5       # the 2-5-5-5 network's training curve is flat long before (the default ends at 2000)


def build_config(args: argparse.Namespace):  # -> LabConfig
    from stbin.analysis.protocol import LabConfig

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    check_threads("--threads", args.threads)
    kw: dict = {"seed": args.seed, "sweep": not args.no_sweep}
    if args.estimates is not None:
        if not 2 <= args.estimates <= MAX_ESTIMATES:
            raise ValueError(f"--estimates must be between 2 and {MAX_ESTIMATES}, got {args.estimates}")
        kw["n_estimates"] = args.estimates
        kw["sweep_estimates"] = min(args.estimates, 2000 if not args.quick else 300)
    if args.epochs is not None:
        eps = _int_list(args.epochs, "--epochs")
        if any(not 0 <= e <= MAX_EPOCH for e in eps):
            raise ValueError(f"--epochs must be between 0 and {MAX_EPOCH}, got {args.epochs!r}")
        kw["epochs"] = tuple(sorted(set(eps)))
    if args.methods is not None:
        kw["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = LabConfig.quick(**kw) if args.quick else LabConfig(**kw)
    return cfg.validate()


def _command_line(args: argparse.Namespace) -> str:
    parts = ["stbin estimator-lab"]
    if args.quick:
        parts.append("--quick")
    for opt in ("seed", "estimates", "epochs", "methods"):
        v = getattr(args, opt)
        if v is not None and not (opt == "seed" and v == 0):
            parts.append(f"--{opt} {v}")
    if args.no_sweep:
        parts.append("--no-sweep")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from stbin.reporting import require_matplotlib
    require_matplotlib("the plots of the estimator lab's report", alternative=None)
    cfg = build_config(args)  # every value checked before any work (the threads too)
    out = args.out
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise OSError(f"output folder is not writable: {out}")

    import torch
    from tqdm import tqdm

    from stbin.analysis.protocol import lab_work, run_lab
    from stbin.analysis.report import headline_epoch, plot_protocol, plot_sweeps, write_csv, write_report

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bar = tqdm(total=lab_work(cfg), desc="estimators", disable=args.no_progress, file=sys.stderr,
               dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")

    def tick(n: float, what: str) -> None:
        bar.set_postfix_str(what, refresh=False)
        bar.update(n)

    try:
        result = run_lab(cfg, tick)
    finally:
        bar.close()
    csv_path = os.path.join(out, "metrics.csv")
    write_csv(result.rows, csv_path)
    figs = plot_protocol(result, out) + plot_sweeps(result, out)
    report = write_report(result, out, figs, command=_command_line(args))
    ep = headline_epoch(result)
    print(f"estimator lab: {len(result.rows)} metric rows, headline snapshot after {ep} epochs, "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"  exact gradients of the {cfg.depth}x{cfg.width} network over {2 * cfg.n_per_class} points: "
          f"{result.timings['exact_gradients_s'] * 1000:.2f} ms")
    for path in [report, csv_path, *figs]:
        print(f"  wrote {path}")
    return 0
