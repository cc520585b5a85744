"""``stbin reproduce NAME``: run a paper's experiment end to end (``stbin.recipes``).

Examples::

    stbin reproduce --list
    stbin reproduce activation-quantized --quick          # smoke run (about 30 s)
    stbin reproduce activation-quantized --out reproduce  # the full setting, 3 seeds
    stbin reproduce ste-instability --out reproduce       # reuses the quantized networks above
    stbin reproduce sbn-study --seeds 5
    stbin reproduce sbn-study --jobs 2 --epoch-scale 0.25   # 2 cores, 5 instead of 20 epochs
    stbin reproduce activation-quantized --dataset fashion_mnist --only 'resnet20-*'   # ResNet-20 rows
    stbin reproduce activation-quantized --list-runs --dataset fashion_mnist           # the run keys
    stbin reproduce ste-instability --only 'lenet5-q2-relu-to-*-s0' --seeds 1   # one cell

Writes ``OUT/NAME/README.md`` (Markdown tables, mean ± std over seeds, findings computed
from the numbers), PNG plots and ``results.json`` beside it; every run lives in
``OUT/runs/KEY`` and is reused when rerun with the same configuration; a run that was
interrupted resumes from its last epoch checkpoint. The deep networks' rows (VGG-11,
ResNet-20, the conv nets of sbn-study) train on ``--dataset`` (default cifar10): CIFAR-10 rows
run when ``--cifar-root`` (or the default data folder) has CIFAR-10 and a GPU is there (or
with --device), else the table says why they did not run. ``--quick`` writes under
``OUT/quick/`` instead.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reproduce", help="reproduce a paper's experiment (tables and plots)",
                              description=__doc__.replace("``", "").replace("::", ":"),  # plain text
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="recipe name (see --list)")
    p.add_argument("--quick", action="store_true", help="smoke run: 10000 MNIST images, 2 epochs per phase, "
                   "1 seed, under OUT/quick/ (about 30 s per recipe on 2 CPU cores)")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1; default 3, or 1 with --quick)")
    p.add_argument("--out", default="reproduce", help="output folder (default: reproduce)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the recipe's own-data runs (LeNet-5 / MNIST, the MLPs), "
                        "e.g. data.root=PATH (repeatable)")
    p.add_argument("--dataset", default="cifar10", metavar="NAME",
                   help="dataset of the deep networks' rows: any registered dataset, e.g. fashion_mnist "
                        "(default: cifar10, the papers')")
    p.add_argument("--deep-set", dest="deep_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the deep networks' runs, e.g. data.train_limit=10000 (repeatable)")
    p.add_argument("--cifar-root", metavar="DIR", help="folder with cifar-10-batches-py for the CIFAR-10 rows")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="train only the runs whose key matches PATTERN (shell-style, comma-separated list "
                        "allowed; repeatable) and the runs they start from; the others are reused when "
                        "finished. Run keys: see --list-runs")
    p.add_argument("--list-runs", action="store_true", help="list the recipe's run keys (with --seeds, "
                   "--dataset) and exit")
    p.add_argument("--device", help="device of every run (auto, cpu, cuda; default auto)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (train.amp; ignored on CPU)")
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
    recipe = get_recipe(args.name)  # unknown name: ValueError listing the valid ones
    if args.list_runs:
        from stbin.data import DATASETS

        DATASETS.get(args.dataset)
        n = (1 if args.quick else 3) if args.seeds is None else args.seeds
        if n < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        for r in recipe.runs(args.quick, list(range(n)), args.dataset):
            print(r.key + (f"  (starts from {r.init_from})" if r.init_from else ""))
        return 0
    from stbin.reporting import require_matplotlib
    require_matplotlib("the plots of the recipe's report", alternative=None)
    report = run_recipe(args.name, args.out, quick=args.quick, seeds=args.seeds, overrides=args.overrides,
                        cifar_root=args.cifar_root, device=args.device, jobs=args.jobs,
                        epoch_scale=args.epoch_scale, dataset=args.dataset, deep_overrides=args.deep_overrides,
                        only=args.only, amp=args.amp)
    print(f"report: {report}")
    return 0
