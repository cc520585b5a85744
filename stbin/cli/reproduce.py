"""``stbin reproduce NAME``: run a paper's experiment end to end (``stbin.recipes``).

Examples::

    stbin reproduce --list
    stbin reproduce activation-quantized --quick          # minutes on CPU (smoke test)
    stbin reproduce activation-quantized --out reproduce  # the full setting, 3 seeds
    stbin reproduce ste-instability --out reproduce       # reuses the quantized networks above
    stbin reproduce sbn-study --seeds 5
    stbin reproduce sbn-study --jobs 2 --epoch-scale 0.25   # 2 cores, 5 instead of 20 epochs

Writes ``OUT/NAME/README.md`` (Markdown tables, mean ± std over seeds, findings computed
from the numbers), PNG plots and ``results.json`` beside it; every run lives in
``OUT/runs/KEY`` and is reused when rerun with the same configuration. CIFAR-10 rows run
when ``--cifar-root`` (or the default data folder) has CIFAR-10 and a GPU is there; else
the table says why they did not run. ``--quick`` writes under ``OUT/quick/`` instead.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reproduce", help="reproduce a paper's experiment (tables and plots)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="recipe name (see --list)")
    p.add_argument("--quick", action="store_true", help="small subsets and few epochs (minutes on CPU)")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1; default 3, or 1 with --quick)")
    p.add_argument("--out", default="reproduce", help="output folder (default: reproduce)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every non-CIFAR run, e.g. data.root=PATH (repeatable)")
    p.add_argument("--cifar-root", metavar="DIR", help="folder with cifar-10-batches-py for the CIFAR-10 rows")
    p.add_argument("--device", help="device of every run (auto, cpu, cuda; default auto)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once, one process each (a run waits for the run it starts from); "
                        "on CPU set N to the number of cores: every run uses one thread (default 1)")
    p.add_argument("--epoch-scale", type=float, default=1.0, metavar="F",
                   help="multiply every run's epochs by F (e.g. 0.4: 50 -> 20 epochs) when the paper's schedule "
                        "is too long for the machine; the report states F (default 1: the paper's epochs)")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from stbin.recipes import get_recipe, recipe_names, run_recipe

    if args.list:
        for n in recipe_names():
            print(f"{n:22s} {get_recipe(n).title}")
        return 0
    if not args.name:
        raise ValueError(f"name a recipe: {', '.join(recipe_names())} (or --list)")
    get_recipe(args.name)  # unknown name: ValueError listing the valid ones
    from stbin.cli.deps import require
    require("matplotlib", extra="reports", purpose="stbin reproduce (its report's plots)")
    report = run_recipe(args.name, args.out, quick=args.quick, seeds=args.seeds, overrides=args.overrides,
                        cifar_root=args.cifar_root, device=args.device, jobs=args.jobs,
                        epoch_scale=args.epoch_scale)
    print(f"report: {report}")
    return 0
