"""``run_recipe``: build every run's configuration, train what is not finished, write the report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from stbin.recipes.base import NOT_SELECTED, SKIPPED, RecipeContext, Run, get_recipe
from stbin.recipes.execution import cached_result, resumable_checkpoint, toml_str, train_parallel, train_run, write_text
from stbin.recipes.summary import report_head, trained_on


def run_recipe(name: str, out_dir: str | Path = "reproduce", quick: bool = False, seeds: int | None = None,
               overrides: list[str] | tuple[str, ...] = (), cifar_root: str | None = None,
               device: str | None = None, log: Callable[[str], None] = print, jobs: int = 1,
               epoch_scale: float = 1.0, dataset: str = "cifar10", deep_overrides: list[str] | tuple[str, ...] = (),
               only: list[str] | tuple[str, ...] | None = None, amp: bool = False) -> Path:
    """Run recipe ``name`` (all its runs, reusing finished ones), write its report; returns its path.

    ``jobs``: how many runs train at once, each in its own process (a run starts once the run
    it starts from has finished); 1 trains them one after another in this process. Every run
    is seeded, so the results do not depend on ``jobs``. ``epoch_scale``: every run's number
    of epochs is multiplied by this factor (rounded, at least 1) — a shortened setting for
    machines that cannot afford the paper's schedule; the report states the factor.
    ``dataset``: the dataset of the deep networks' rows (VGG-11, ResNet-20, the conv nets),
    any name of :data:`stbin.data.DATASETS`; ``deep_overrides``: ``section.key=value`` items
    for those runs only (``overrides`` apply to the recipe's other runs). ``only``: fnmatch
    patterns of run keys (comma-separated items allowed): only those runs and the runs they
    start from train; the others are reused when finished, else reported as not selected.
    ``amp``: bfloat16 autocast on CUDA (``train.amp``; ignored on CPU).
    """
    from stbin.training.config import build_config

    recipe = get_recipe(name)
    n_seeds = (1 if quick else 3) if seeds is None else int(seeds)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if int(jobs) < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if not (math.isfinite(epoch_scale) and epoch_scale > 0):
        raise ValueError(f"--epoch-scale must be a positive number, got {epoch_scale}")
    from stbin.data import DATASETS

    DATASETS.get(dataset)  # unknown name: ValueError listing the registered datasets
    if device is not None:  # a bad or missing device fails here, before any run starts
        from stbin.training.trainer import resolve_device

        resolve_device(device)
    seed_list = list(range(n_seeds))
    root = Path(out_dir) / "quick" if quick else Path(out_dir)  # quick runs never mix with full ones
    runs = recipe.runs(quick, seed_list, dataset)
    selected = select_runs(runs, only)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    index = {run.key: i for i, run in enumerate(runs, 1)}

    def config_items(run: Run, rdir: Path) -> list[str]:
        """The run's config overrides: the recipe's, then the command line's."""
        items = list(run.overrides) + [f"seed={run.seed}", f"out_dir={toml_str(str(rdir))}", "train.progress=false"]
        if run.init_from is not None:
            items.append(f"init_from={toml_str(str(root / 'runs' / run.init_from))}")
        if device is not None:
            items.append(f"device={toml_str(device)}")
        if amp:
            items.append("train.amp=true")
        if run.dataset is not None:
            items.append(f"data.name={toml_str(run.dataset)}")
            if run.dataset == "cifar10" and cifar_root is not None:
                items.append(f"data.root={toml_str(cifar_root)}")
            items += list(deep_overrides)
        else:
            items += list(overrides)
        return items

    for run in runs:  # a bad --set / --deep-set value is the user's: refused before any run starts
        build_config(run.preset, overrides=config_items(run, root / "runs" / run.key))

    def prepare(run: Run) -> tuple[Any, Path] | None:
        """The run's config and folder; None when its result is already known (reused, skipped, not run)."""
        i = index[run.key]
        rdir = root / "runs" / run.key
        items = config_items(run, rdir)
        try:
            cfg = build_config(run.preset, overrides=items)
            if epoch_scale != 1.0:
                cfg.train.epochs = max(1, math.floor(cfg.train.epochs * epoch_scale + 0.5))
            cached = cached_result(rdir, cfg.to_dict())
            if cached is not None:
                results[run.key] = cached
                log(f"[{i}/{len(runs)}] {run.key}: reused the finished run in {rdir}")
                return None
            if run.key not in selected:
                results[run.key] = {"error": NOT_SELECTED}
                return None
            if run.init_from is not None and "error" in results.get(run.init_from, {"error": "not run"}):
                results[run.key] = {"error": SKIPPED}
                log(f"[{i}/{len(runs)}] {run.key}: skipped ({run.init_from} did not finish)")
                return None
            if run.dataset == "cifar10" and not quick and device is None:
                import torch
                if not torch.cuda.is_available():
                    raise ValueError("the CIFAR-10 rows need CIFAR-10 (--cifar-root DIR) and a CUDA GPU in the "
                                     "full setting; no GPU here (--device cpu forces a CPU run)")
        except (ValueError, OSError) as e:
            fail(run, e)
            return None
        ckpt = resumable_checkpoint(rdir, cfg.to_dict())
        how = f"resuming after epoch {ckpt['epoch']} of {cfg.train.epochs}" if ckpt else f"{cfg.train.epochs} epochs"
        log(f"[{i}/{len(runs)}] {run.key}: training ({how}, seed {run.seed})")
        return cfg, rdir

    def fail(run: Run, e: BaseException) -> None:
        if not run.optional:
            raise e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if run.dataset == "cifar10" and "CIFAR-10" in msg:
            msg += " (stbin reproduce: --cifar-root DIR)"
        results[run.key] = {"error": msg}
        log(f"[{index[run.key]}/{len(runs)}] {run.key}: not run: {msg}")

    def done(run: Run, rec: dict[str, Any]) -> None:
        results[run.key] = rec
        acc = ", ".join(f"{k} {v:.2f}%" for k, v in rec["test"].items())
        log(f"[{index[run.key]}/{len(runs)}] {run.key}: done in {rec.get('time_s') or 0:.1f} s (test {acc})")

    if jobs == 1:
        for run in runs:
            prep = prepare(run)
            if prep is None:
                continue
            try:
                rec = train_run(*prep)
            except (ValueError, OSError) as e:
                fail(run, e)
                continue
            done(run, rec)
    else:
        train_parallel(runs, int(jobs), prepare, fail, done, results)

    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    ctx = RecipeContext(recipe, quick, seed_list, out, dataset, runs, results)
    body = recipe.summarize(ctx)
    run_time = sum(results[r.key].get("time_s") or 0.0 for r in runs if r.key in results)
    devices = sorted({str(results[r.key].get("device") or "unrecorded") for r in runs
                      if "error" not in results.get(r.key, {"error": ""})})
    summary = {"recipe": name, "title": recipe.title, "quick": quick, "seeds": seed_list,
               "command": command_line(name, out_dir, quick, n_seeds, overrides, dataset, deep_overrides, only,
                                       epoch_scale, jobs, device, amp, cifar_root),
               "overrides": list(overrides),
               "deep_overrides": list(deep_overrides), "dataset": dataset, "only": list(only or []),
               "epoch_scale": epoch_scale, "jobs": int(jobs), "devices": devices,
               "wall_time_s": time.perf_counter() - t0, "run_time_s": run_time,
               "runs": {r.key: {"seed": r.seed, "tags": r.tags, "init_from": r.init_from,
                                **({"dataset": d} if (d := trained_on(results.get(r.key, {}))) else {}),
                                **{k: v for k, v in results.get(r.key, {}).items()
                                   if k in ("test", "error", "time_s", "device", "images_per_s", "epochs",
                                            "history")}}
                        for r in runs}}
    report = out / "README.md"
    write_text(report, "\n".join(report_head(summary, f"{name}: {recipe.title}", 1, root / "runs"))
               + "\n" + body.rstrip() + "\n")
    write_text(out / "results.json", json.dumps(summary, indent=1))
    return report


def command_line(name: str, out_dir: str | Path, quick: bool, seeds: int, overrides: Any, dataset: str,
                 deep_overrides: Any, only: Any, epoch_scale: float, jobs: int, device: str | None, amp: bool,
                 cifar_root: str | None) -> str:
    """The ``stbin reproduce`` command line of these settings, shell-quoted."""
    import shlex

    a = ["stbin", "reproduce", name, "--out", str(out_dir)] + (["--quick"] if quick else []) + ["--seeds", str(seeds)]
    if dataset != "cifar10":
        a += ["--dataset", dataset]
    a += [x for o in overrides for x in ("--set", o)] + [x for o in deep_overrides for x in ("--deep-set", o)]
    a += [x for o in (only or []) for x in ("--only", o)]
    if epoch_scale != 1.0:
        a += ["--epoch-scale", f"{epoch_scale:g}"]
    if int(jobs) != 1:
        a += ["--jobs", str(jobs)]
    if device is not None:
        a += ["--device", device]
    if amp:
        a.append("--amp")
    if cifar_root is not None:
        a += ["--cifar-root", cifar_root]
    return " ".join(shlex.quote(x) for x in a)


def select_runs(runs: list[Run], only: list[str] | tuple[str, ...] | None) -> set[str]:
    """Keys of the runs matching the fnmatch patterns ``only`` plus the runs they start from (all if None).

    ValueError when a pattern matches no run of the recipe (a typo would silently select nothing).
    """
    import fnmatch

    keys = [r.key for r in runs]
    if not only:
        return set(keys)
    pats = [p.strip() for item in only for p in str(item).split(",") if p.strip()]
    if not pats:
        raise ValueError("--only needs at least one run-key pattern, e.g. 'resnet20-*-q2-*'")
    chosen: set[str] = set()
    for pat in pats:
        hit = fnmatch.filter(keys, pat)
        if not hit:
            raise ValueError(f"--only {pat!r} matches no run of this recipe; its runs are e.g. "
                             f"{', '.join(keys[:3])} ... {keys[-1]}")
        chosen.update(hit)
    parent = {r.key: r.init_from for r in runs}
    for k in list(chosen):
        while parent.get(k) is not None:
            k = parent[k]
            chosen.add(k)
    return chosen


