"""Paper-reproduction recipes behind ``stbin reproduce NAME``.

A recipe is a list of :class:`Run` s — trainer configurations (preset + ``--set`` style
overrides) executed in order by :func:`stbin.training.train`, where a run may start from
another run's weights (``init_from``: pretrained -> quantized -> identity continuation) —
and a ``summarize`` function that turns the runs' metrics into a Markdown table
(mean ± std over seeds), PNG plots and findings sentences computed from the numbers.

Layout of ``--out DIR``: ``DIR/runs/<run key>/`` holds each run (checkpoints, metrics,
``report.md`` and ``recipe-result.json``); runs with the same key are shared between
recipes and reused when their configuration is unchanged (so ``ste-instability`` reuses the
quantized networks of ``activation-quantized``, and an interrupted recipe continues where it
stopped). ``DIR/<recipe>/README.md`` is the recipe's report, with its plots beside it. With ``--quick``
everything goes under ``DIR/quick/`` instead, so quick and full runs never mix.

Runs on CIFAR-10 are *optional*: when the data is missing (or fails to load) the error is
recorded, the rows say so, and runs that depend on them are skipped; the recipe goes on.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stbin._io import atomic_write
from stbin._registry import unknown_name_message

RESULT_FILE = "recipe-result.json"
SKIPPED = "skipped: the run it starts from did not finish"  # one reason for all, so reports count them in one line
NOT_SELECTED = "not selected (--only) and not finished before"


@dataclass
class Run:
    """One training run of a recipe.

    ``key``: unique folder name under ``DIR/runs``; ``preset`` + ``overrides``: the trainer
    config (``section.key=value`` strings); ``init_from``: the key of the run whose final
    weights start this one; ``optional``: a failure (e.g. CIFAR-10 missing) is recorded
    instead of raised; ``dataset``: the run trains on the invocation's ``--dataset`` (the deep
    networks' rows), its overrides come from ``--deep-set`` and, for CIFAR-10, its data folder
    from ``--cifar-root``; None: the run keeps the recipe's own data (LeNet-5 / MNIST, the MLPs)
    and takes the ``--set`` overrides; ``tags``: labels for tables.
    """

    key: str
    preset: str
    overrides: list[str]
    seed: int = 0
    init_from: str | None = None
    optional: bool = False
    dataset: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str
    title: str
    runs: Callable[[bool, list[int], str], list[Run]]     # (quick, seeds, dataset of the deep rows) -> runs
    summarize: Callable[["RecipeContext"], str]           # -> Markdown body


@dataclass
class RecipeContext:
    recipe: Recipe
    quick: bool
    seeds: list[int]
    out: Path                          # DIR/<recipe>
    dataset: str                       # the deep rows' dataset (--dataset)
    runs: list[Run]
    results: dict[str, dict[str, Any]]  # run key -> {"test", "history", "time_s"} or {"error"}

    def result(self, key: str) -> dict[str, Any]:
        return self.results.get(key, {"error": "not run"})


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    _load_all()
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    _load_all()
    if name not in RECIPES:
        raise ValueError(unknown_name_message("recipe", name, RECIPES))
    return RECIPES[name]


def _load_all() -> None:
    from stbin.recipes import activation_quantized, sbn_study, ste_instability  # noqa: F401


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a kill mid-write leaves the old file or none)."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    seed_list = list(range(n_seeds))
    root = Path(out_dir) / "quick" if quick else Path(out_dir)  # quick runs never mix with full ones
    runs = recipe.runs(quick, seed_list, dataset)
    selected = select_runs(runs, only)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    index = {run.key: i for i, run in enumerate(runs, 1)}

    def prepare(run: Run) -> tuple[Any, Path] | None:
        """The run's config and folder; None when its result is already known (reused, skipped, not run)."""
        i = index[run.key]
        rdir = root / "runs" / run.key
        items = list(run.overrides) + [f"seed={run.seed}", f"out_dir={_q(str(rdir))}", "train.progress=false"]
        if run.init_from is not None:
            items.append(f"init_from={_q(str(root / 'runs' / run.init_from))}")
        if device is not None:
            items.append(f"device={_q(device)}")
        if amp:
            items.append("train.amp=true")
        if run.dataset is not None:
            items.append(f"data.name={_q(run.dataset)}")
            if run.dataset == "cifar10" and cifar_root is not None:
                items.append(f"data.root={_q(cifar_root)}")
            items += list(deep_overrides)
        else:
            items += list(overrides)
        try:
            cfg = build_config(run.preset, overrides=items)
            if epoch_scale != 1.0:
                cfg.train.epochs = max(1, math.floor(cfg.train.epochs * epoch_scale + 0.5))
            cached = _cached(rdir, cfg.to_dict())
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
        ckpt = _resumable(rdir, cfg.to_dict())
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
                rec = _train_run(*prep)
            except (ValueError, OSError) as e:
                fail(run, e)
                continue
            done(run, rec)
    else:
        _run_parallel(runs, int(jobs), prepare, fail, done, results)

    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    ctx = RecipeContext(recipe, quick, seed_list, out, dataset, runs, results)
    body = recipe.summarize(ctx)
    setting = "**quick** (smoke-test setting: small subsets, few epochs — not the paper's numbers)" if quick \
        else "**full**"
    if epoch_scale != 1.0:
        setting += f", **epochs scaled by {epoch_scale:g}** (`--epoch-scale`: shorter than the paper's schedule)"
    run_time = sum(results[r.key].get("time_s") or 0.0 for r in runs if r.key in results)
    head = [f"# stbin reproduce {name}: {recipe.title}", "",
            f"Setting: {setting}; seeds {seed_list}; {len(runs)} runs, "
            f"{sum('error' not in results[r.key] for r in runs if r.key in results)} finished; "
            f"wall time of this invocation {time.perf_counter() - t0:.0f} s"
            + (f" ({jobs} runs at a time)" if jobs > 1 else "")
            + f"; training time of the finished runs {run_time:.0f} s in total (reused runs included, each "
            f"measured when it trained). Runs are in `{root / 'runs'}`.", ""]
    devices = sorted({str(results[r.key].get("device") or "unrecorded") for r in runs
                      if "error" not in results.get(r.key, {"error": ""})})
    head += [f"Device of the finished runs: {', '.join(devices) if devices else 'none finished'}"
             + (" (one torch thread per run)" if "cpu" in devices else "")
             + ("; bfloat16 autocast on CUDA (`--amp`)" if amp else "")
             + f". Dataset of the deep networks' rows: {dataset_label(dataset)} (`--dataset {dataset}`).", ""]
    for what, items_ in (("the recipe's own runs (`--set`)", overrides), ("the deep networks' runs (`--deep-set`)",
                                                                           deep_overrides)):
        if items_:
            head += [f"Overrides applied to {what}: {', '.join(f'`{o}`' for o in items_)}.", ""]
    if only:
        head += [f"Runs selected with `--only {','.join(only)}` (and the runs they start from); the others are "
                 "reused when finished.", ""]
    head.append("")
    report = out / "README.md"
    write_text(report, "\n".join(head) + body.rstrip() + "\n")
    summary = {"recipe": name, "quick": quick, "seeds": seed_list, "overrides": list(overrides),
               "deep_overrides": list(deep_overrides), "dataset": dataset, "only": list(only or []),
               "epoch_scale": epoch_scale, "devices": devices, "wall_time_s": time.perf_counter() - t0,
               "runs": {r.key: {"seed": r.seed, "tags": r.tags, "init_from": r.init_from,
                                **{k: v for k, v in results.get(r.key, {}).items()
                                   if k in ("test", "error", "time_s", "device", "images_per_s", "epochs")}}
                        for r in runs}}
    write_text(out / "results.json", json.dumps(summary, indent=1))
    return report


def _resumable(rdir: Path, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The newest complete checkpoint of ``rdir`` if it was written by this very configuration, else None."""
    from stbin.training.trainer import latest_checkpoint

    if not any(rdir.glob("checkpoint-epoch*.pt")):
        return None
    try:
        ckpt = latest_checkpoint(rdir)
    except (OSError, ValueError):  # every checkpoint damaged: train from scratch
        return None
    return ckpt if ckpt.get("config") == json.loads(json.dumps(cfg)) else None


def _train_run(cfg: Any, rdir: Path) -> dict[str, Any]:
    """Train one run, continuing its newest checkpoint when that was written by the same configuration
    (an interrupted run resumes where it stopped, bit for bit on CPU); checkpoints of another
    configuration are removed and the run trains from scratch. Returns its record.

    ``time_s`` of a resumed run adds the training time of the epochs done before the interruption
    (their per-epoch time; the evaluation time of those epochs is not counted).
    """
    from stbin.training.trainer import train

    resume = _resumable(rdir, cfg.to_dict())
    if resume is None:
        for stale in rdir.glob("checkpoint-epoch*.pt"):  # of an earlier configuration of this run
            stale.unlink()
    (rdir / RESULT_FILE).unlink(missing_ok=True)
    res = train(cfg, resume=resume, log=lambda s: None)
    from stbin.training.trainer import resolve_device

    hist = res["history"]
    ips = [h["images_per_s"] for h in hist if h.get("images_per_s")]
    rec = {"config": cfg.to_dict(), "test": res["test"], "history": hist, "time_s": res.get("time_s"),
           "device": str(resolve_device(cfg.device)), "epochs": len(hist),
           "images_per_s": statistics.median(ips) if ips else None}
    if resume is not None:
        done = int(resume["epoch"])
        rec["resumed_after_epoch"] = done
        rec["time_s"] = (rec["time_s"] or 0.0) + sum(float(h.get("epoch_time_s") or 0.0) for h in res["history"][:done])
    rdir.mkdir(parents=True, exist_ok=True)
    write_text(rdir / RESULT_FILE, json.dumps(rec, indent=1))
    return rec


def _train_worker(cfg: Any, rdir: Path) -> tuple[str, Any]:
    """Process-pool entry: ("ok", record) or ("error", exception) for the expected failures."""
    try:
        return "ok", _train_run(cfg, rdir)
    except (ValueError, OSError) as e:
        return "error", e


def _run_parallel(runs: list[Run], jobs: int, prepare: Callable, fail: Callable, done: Callable,
                  results: dict[str, dict[str, Any]]) -> None:
    """Train ``runs`` with up to ``jobs`` worker processes, each run once the run it starts from is done."""
    import concurrent.futures as cf
    import multiprocessing as mp

    pending = list(runs)
    running: dict[cf.Future, Run] = {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        try:
            while pending or running:
                progressed = True
                while progressed and len(running) < jobs:
                    progressed = False
                    for run in pending:
                        if run.init_from is not None and run.init_from not in results:
                            continue  # its starting run is not done yet
                        pending.remove(run)
                        progressed = True
                        prep = prepare(run)
                        if prep is not None:
                            running[pool.submit(_train_worker, *prep)] = run
                        break
                if not running:
                    if pending:  # dependencies that never run (cannot happen with a valid recipe)
                        raise ValueError(f"runs wait on unknown starting runs: {[r.key for r in pending]}")
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    run = running.pop(fut)
                    status, value = fut.result()
                    if status == "ok":
                        done(run, value)
                    else:
                        fail(run, value)
        except BaseException:
            for fut in running:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


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


DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits",
                  "synthetic": "synthetic"}


def dataset_label(name: str) -> str:
    """How a table names dataset ``name`` (its registry name when no label is known)."""
    return DATASET_LABELS.get(name, name)


def run_dataset(ctx: "RecipeContext", keys: list[str], default: str) -> str:
    """The dataset the finished runs ``keys`` trained on (from their configuration), else ``default``."""
    for k in keys:
        name = ((ctx.result(k).get("config") or {}).get("data") or {}).get("name")
        if name:
            return name
    return default


def _cached(rdir: Path, cfg: dict[str, Any]) -> dict[str, Any] | None:
    f = rdir / RESULT_FILE
    if not f.is_file():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("config") == json.loads(json.dumps(cfg)) else None


# ----------------------------------------------------------------------------- helpers for summaries

def mean_std(values: list[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def fmt(values: list[float], digits: int = 2, unit: str = "") -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "—"
    if n == 1:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f} ± {s:.{digits}f}{unit}"


def final(res: dict[str, Any], key: str) -> float | None:
    h = res.get("history") or []
    return h[-1].get(key) if h else None


def errors_note(ctx: RecipeContext, keys: list[str]) -> list[str]:
    """Why the runs ``keys`` did not run, one line per reason (for a 'not run' note under a table)."""
    seen: dict[str, list[str]] = {}
    for k in dict.fromkeys(keys):
        e = ctx.result(k).get("error")
        if e:
            seen.setdefault(e, []).append(k)
    return [f"* not run ({len(v)} run{'s' if len(v) > 1 else ''}, e.g. `{v[0]}`): {e}" for e, v in seen.items()]


def line_plot(path: Path, series: list[tuple], xlabel: str, ylabel: str,
              title: str = "", vline: float | None = None, logy: bool = False) -> str | None:
    """Save a line plot of ``(label, x, y)`` or ``(label, x, y, style)`` series; returns the file name.

    ``style``: matplotlib keyword arguments of that line (colour, linestyle); ``logy``: log-scale
    y axis (when every value is positive). None without matplotlib or data.
    """
    series = [s for s in series if s[1]]
    if not series:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, x, y, *style in series:
        ax.plot(x, y, marker="o", markersize=3, label=label, **(style[0] if style else {}))
    if logy and all(v > 0 for _, _, y, *_ in series for v in y):
        ax.set_yscale("log")
    if vline is not None:
        ax.axvline(vline, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def images_section(heading: str, plots: list[str]) -> list[str]:
    """Markdown lines of a report section embedding the PNG files ``plots`` (none when empty)."""
    if not plots:
        return []
    return ["", f"## {heading}", ""] + [f"![{p.rsplit('.', 1)[0]}]({p})" for p in plots]


def mean_curve(histories: list[list[dict[str, Any]]], key: str) -> tuple[list[float], list[float]]:
    """Epoch-wise mean of ``key`` over the runs' histories (up to the shortest)."""
    hs = [h for h in histories if h]
    if not hs:
        return [], []
    n = min(len(h) for h in hs)
    xs = [float(hs[0][i]["epoch"]) for i in range(n)]
    ys = [statistics.fmean(float(h[i][key]) for h in hs) for i in range(n)]
    return xs, ys


__all__ = ["Run", "Recipe", "RecipeContext", "RECIPES", "register", "recipe_names", "get_recipe", "run_recipe",
           "select_runs", "dataset_label", "run_dataset"]
