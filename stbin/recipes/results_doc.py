"""Generate a results document (``docs/results.md``) from the recipes' ``results.json`` files.

Every section is rebuilt from one ``results.json`` (written by ``stbin reproduce`` beside each
recipe report; it holds every run's test accuracies, per-epoch history, time and device): the
same tables, findings sentences computed from the numbers and plots as the recipe's own report,
under a header with the command that produced it, its wall time and its device. Nothing is
typed by hand, so the document always says what the files say.

Usage::

    python -m stbin.recipes.results_doc reproduce-deep [more folders or results.json files] \\
        --output docs/results.md --figures docs/results

A folder is searched for ``*/results.json`` (``quick/`` excluded unless ``--quick``). Bad input
(a missing, unreadable or malformed file, an unknown recipe) is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from stbin.recipes.base import RecipeContext, get_recipe
from stbin.recipes.execution import write_text
from stbin.recipes.summary import report_head

RUN_FIELDS = {"test": dict, "error": str, "time_s": (int, float), "history": list, "device": str, "epochs": int,
              "images_per_s": (int, float), "seed": int, "tags": dict, "init_from": str, "dataset": str}


def _bad(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def load_summary(path: str | Path) -> dict[str, Any]:
    """Read and check one ``results.json``: every field the document uses has the type it needs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise OSError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise _bad(path, f"not JSON ({e})") from None
    if not isinstance(data, dict):
        raise _bad(path, "expected a JSON object with 'recipe', 'seeds' and 'runs'")
    name = data.get("recipe")
    if not isinstance(name, str):
        raise _bad(path, f"'recipe' must be a recipe name, got {name!r}")
    get_recipe(name)  # unknown recipe: ValueError naming the valid ones
    seeds = data.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _bad(path, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    runs = data.get("runs")
    if not isinstance(runs, dict):
        raise _bad(path, "'runs' must be an object of run records")
    for key, rec in runs.items():
        if not isinstance(rec, dict):
            raise _bad(path, f"run {key!r} must be an object")
        for f, typ in RUN_FIELDS.items():
            v = rec.get(f)
            if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
                raise _bad(path, f"run {key!r}: {f!r} has the wrong type ({type(v).__name__})")
        for m, acc in (rec.get("test") or {}).items():
            if not (isinstance(acc, (int, float)) and not isinstance(acc, bool) and math.isfinite(acc)
                    and 0 <= acc <= 100):
                raise _bad(path, f"run {key!r}: test accuracy {m!r} must be a percentage, got {acc!r}")
        for h in rec.get("history") or []:
            if not (isinstance(h, dict) and isinstance(h.get("epoch"), int)):
                raise _bad(path, f"run {key!r}: every history entry needs an integer 'epoch'")
        if "test" not in rec and "error" not in rec:
            raise _bad(path, f"run {key!r} has neither 'test' nor 'error'")
    for f in ("quick",):
        if not isinstance(data.get(f, False), bool):
            raise _bad(path, f"{f!r} must be true or false")
    scale = data.get("epoch_scale", 1.0)
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise _bad(path, f"'epoch_scale' must be a positive number, got {scale!r}")
    if not isinstance(data.get("dataset", "cifar10"), str):
        raise _bad(path, "'dataset' must be a dataset name")
    return data


def context(summary: dict[str, Any], figures: Path) -> RecipeContext:
    """The :class:`RecipeContext` of a loaded summary, its plots going to ``figures``."""
    recipe = get_recipe(summary["recipe"])
    dataset = summary.get("dataset", "cifar10")
    runs = recipe.runs(bool(summary.get("quick")), list(summary["seeds"]), dataset)
    results = dict(summary["runs"])
    figures.mkdir(parents=True, exist_ok=True)
    return RecipeContext(recipe, bool(summary.get("quick")), list(summary["seeds"]), figures, dataset, runs, results)


def _demote(body: str, levels: int) -> str:
    """Markdown headings one or more levels deeper (a recipe's ``##`` becomes ``###``)."""
    return "\n".join(("#" * levels + line) if line.startswith("#") else line for line in body.splitlines())


def find_summaries(paths: list[str], quick: bool = False) -> list[Path]:
    """The ``results.json`` files named or found under the folders ``paths`` (sorted, no duplicates)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            hits = [f for f in sorted(p.rglob("results.json"))
                    if quick or "quick" not in f.relative_to(p).parts]
            if not hits:
                raise ValueError(f"{p}: no results.json below this folder (run `stbin reproduce` first)")
            found += hits
        else:
            raise OSError(f"cannot read {p}: no such file or folder")
    return list(dict.fromkeys(found))


def render(files: list[Path], figures: Path, doc_dir: Path, title: str = "Measured results of the reproduction "
           "recipes") -> str:
    """The whole document: one section per ``results.json``, with its plots written under ``figures``."""
    lines = [f"# {title}", "",
             "Generated by `python -m stbin.recipes.results_doc` from the `results.json` files of `stbin reproduce` "
             "(see [recipes.md](recipes.md) for what each recipe runs and why): every table, every findings "
             "sentence and every figure below is computed from those files; rerun the generator after new runs "
             "finish instead of editing this file.", ""]
    summaries = [(f, load_summary(f)) for f in files]  # all checked before anything is written
    by_recipe: dict[str, list[tuple[str, RecipeContext]]] = {}
    for i, (f, s) in enumerate(summaries, 1):
        sub = figures / f"{s['recipe']}-{i}" if len(summaries) > 1 else figures / s["recipe"]
        ctx = context(s, sub)
        by_recipe.setdefault(s["recipe"], []).append((f"`{f}`", ctx))
        body = ctx.recipe.summarize(ctx)
        rel = Path(os.path.relpath(sub, doc_dir)).as_posix()
        body = body.replace("](", f"]({rel}/")  # the plots sit in the figures folder
        lines += report_head(s, f"{s['recipe']}: {ctx.recipe.title}", 2)
        lines += [f"Source: `{f}`.", "", _demote(body, 1).rstrip(), ""]
    for name, items in by_recipe.items():
        found = items[0][1].recipe.compare(items) if items[0][1].recipe.compare and len(items) > 1 else []
        if found:
            lines += [f"## {name}: findings across the summaries above (computed from their tables)", "", *found, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stbin.recipes.results_doc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="stbin reproduce output folders or results.json files")
    p.add_argument("--output", default="docs/results.md", help="the document to write (default: docs/results.md)")
    p.add_argument("--figures", help="folder of the plots (default: results/ beside the document)")
    p.add_argument("--quick", action="store_true", help="include the quick/ reports too")
    args = p.parse_args(argv)
    try:
        out = Path(args.output)
        figures = Path(args.figures) if args.figures else out.parent / "results"
        text = render(find_summaries(args.paths, args.quick), figures, out.parent)
        write_text(out, text)
    except (ValueError, OSError) as e:
        print(f"stbin results-doc: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
