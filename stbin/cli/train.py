"""``stbin train``: train a model from a preset, a TOML config and ``--set key=value`` overrides.

Examples::

    stbin train                                   # the main job (preset sbn_mnist)
    stbin train --preset sbn_fashion_mnist --epochs 10
    stbin train --config my.toml --set optim.lr=0.01 --set model.hidden=[256,256]
    stbin train --resume runs/sbn_mnist           # continue the last complete checkpoint
    stbin train --list-presets

Writes into the output folder: ``checkpoint-epochNNNN.pt`` (every epoch, atomically),
``metrics.jsonl`` / ``metrics.csv``, ``report.md`` with ``loss.png`` / ``accuracy.png``.
Distributed: ``torchrun --nproc_per_node=N -m stbin.cli.main train ...`` (batch size is global).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a binary / stochastic binary network (presets, TOML configs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="named preset (default: sbn_mnist; see --list-presets)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (applied over the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optim.lr=0.01, model.hidden=[256,256] (repeatable)")
    p.add_argument("--epochs", type=int, help="= --set train.epochs=N")
    p.add_argument("--lr", type=float, help="= --set optim.lr=LR")
    p.add_argument("--batch-size", type=int, help="= --set train.batch_size=B (global batch size)")
    p.add_argument("--dataset", help="= --set data.name=NAME (mnist, fashion_mnist, cifar10, digits, synthetic, "
                                     "image_folder, or a plugin 'package.module:factory')")
    p.add_argument("--data-root", help="= --set data.root=PATH (folder of the data files)")
    p.add_argument("--model", help="= --set model.name=NAME (keeps the quantization arguments), or a plugin "
                                   "'package.module:factory' (called with input_shape, num_classes, model options)")
    p.add_argument("--out", help="= --set out_dir=DIR (output folder)")
    p.add_argument("--seed", type=int, help="= --set seed=S")
    p.add_argument("--device", help="= --set device=DEV (auto, cpu, cuda, cuda:N)")
    p.add_argument("--amp", action="store_true", help="bfloat16 mixed precision on CUDA")
    p.add_argument("--resume", nargs="?", const="", metavar="PATH",
                   help="continue from the last complete checkpoint of PATH (a run folder or a checkpoint "
                        "file; default: the output folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="write the report without figures (no matplotlib needed)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--print-config", action="store_true", help="print the resulting config as TOML and exit")
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    for flag, key in (("epochs", "train.epochs"), ("lr", "optim.lr"), ("batch_size", "train.batch_size"),
                      ("seed", "seed")):
        v = getattr(args, flag)
        if v is not None:
            items.append(f"{key}={v!r}")
    for flag, key in (("dataset", "data.name"), ("data_root", "data.root"), ("model", "model.name"),
                      ("out", "out_dir"), ("device", "device")):
        v = getattr(args, flag)
        if v is not None:
            items.append(f"{key}={_toml_str(v)}")
    if args.amp:
        items.append("train.amp=true")
    return items


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# What may change when a run is resumed: how long it trains, where and how it runs, what is
# evaluated. Everything else (model, data, optimizer, schedule, seed, ...) is the checkpoint's.
RESUMABLE_KEYS = ("train.epochs", "train.progress", "train.threads", "train.keep_checkpoints",
                  "train.eval_batch_size", "device", "data.root", "eval.ensemble", "eval.modes", "out_dir")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "model", "optim", "schedule", "train", "eval") and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_resume_overrides(args: argparse.Namespace, overrides: list[str], ckpt: dict) -> None:
    """Refuse options that would change the run being resumed (they would be ignored or mix two runs)."""
    from stbin.training.config import build_config, normalised_config, parse_override

    where = ckpt.get("_path", "the checkpoint")
    if args.resume:  # an explicit PATH: the run is the checkpoint's; a preset or config file has no role
        for flag in ("preset", "config"):
            if getattr(args, flag):
                raise ValueError(f"--resume {args.resume} continues the run of {where} as it was configured; "
                                 f"--{flag} cannot be combined with it (start a new run in another --out)")
        for item in overrides:
            key = next(iter(_flat(parse_override(item))))
            if key not in RESUMABLE_KEYS:
                raise ValueError(f"{key} cannot be changed when resuming {where} (only "
                                 f"{', '.join(RESUMABLE_KEYS)} can); start a new run in another --out")
        return
    # --resume without PATH: the preset / config / overrides name the run; they must be the checkpoint's
    # compared in the normalised form: renamed model options, keys added with their defaults since
    mine = _flat(normalised_config(build_config(args.preset, args.config, overrides).to_dict()))
    theirs = _flat(normalised_config(ckpt["config"]))
    for key in sorted(set(mine) | set(theirs)):
        if key not in RESUMABLE_KEYS and mine.get(key) != theirs.get(key):
            raise ValueError(f"{key} = {mine.get(key)!r} differs from the resumed run's {theirs.get(key)!r} "
                             f"({where}); only {', '.join(RESUMABLE_KEYS)} can change when resuming")


def run(args: argparse.Namespace) -> int:
    """A thin layer over :func:`stbin.train`: flags -> config (or resume point) -> train -> summary lines."""
    from stbin.training.api import train
    from stbin.training.config import build_config, dumps_toml

    if args.list_presets:
        from stbin.training import presets
        from stbin.cli._text import listing, simple_table_rows
        print(listing(simple_table_rows(presets.__doc__ or "")), end="")
        return 0
    overrides = _overrides(args)
    resume = None
    if args.resume is not None:
        from pathlib import Path

        from stbin.training.api import resume_point

        # the run folder: PATH, or the output folder of the (preset/config/overrides) run
        target = args.resume or build_config(args.preset, args.config, overrides).out_dir

        def check(ckpt: dict) -> None:
            if args.out and Path(target).is_dir() and Path(args.out).resolve() != Path(target).resolve():
                raise ValueError(f"--out {args.out} differs from the run folder being resumed ({target})")
            _check_resume_overrides(args, overrides, ckpt)

        cfg, resume = resume_point(target, overrides, check=check,
                                   warn=lambda m: print(f"stbin train: warning: {m}", file=sys.stderr))
    else:
        cfg = build_config(args.preset, args.config, overrides)
    if args.print_config:
        print(dumps_toml(cfg.to_dict()), end="")
        return 0

    from stbin.reporting import require_matplotlib

    if not args.no_plots:  # before any work: the report's curves need matplotlib
        require_matplotlib("the curves of the training report")
    result = train(cfg, resume=resume, progress=False if args.no_progress else None, plots=not args.no_plots)
    if result.report is None:  # a non-zero rank of a distributed run
        return 0
    t = result.test
    parts = [f"mode {t['mode']:.2f}%" if "mode" in t else None, f"mean {t['mean']:.2f}%" if "mean" in t else None,
             f"{cfg.eval.ensemble}-sample ensemble {t['ensemble']:.2f}%" if "ensemble" in t else None]
    print("test accuracy: " + "  ".join(p for p in parts if p))
    print(f"time: {result.time_s:.1f} s")
    print(f"report: {result.report}")
    print(f"checkpoint: {result.checkpoint}")
    return 0
