"""Helpers of the recipes' reports: mean ± std cells, notes on runs that did not run, curves, labels."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable

from stbin.recipes.base import RecipeContext, Run


DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits",
                  "synthetic": "synthetic"}


def dataset_label(name: str) -> str:
    """How a table names dataset ``name`` (its registry name when no label is known)."""
    return DATASET_LABELS.get(name, name)


def run_dataset(ctx: "RecipeContext", keys: list[str], default: str) -> str:
    """The dataset the finished runs ``keys`` trained on (from their configuration), else ``default``."""
    for k in keys:
        name = trained_on(ctx.result(k))
        if name:
            return name
    return default


def trained_on(rec: dict[str, Any]) -> str | None:
    """The dataset of a run record (its configuration's, or the ``dataset`` field of a results.json entry)."""
    name = ((rec.get("config") or {}).get("data") or {}).get("name") or rec.get("dataset")
    return name if isinstance(name, str) else None


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
    try:  # the object API: no pyplot state, the global backend of the user's session is untouched
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover
        return None
    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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




def report_head(summary: dict[str, Any], title: str, level: int = 1, runs_dir: Path | str | None = None) -> list[str]:
    """The header of a recipe report from its ``results.json`` content: title, the command, the setting,
    wall and training time, devices, dataset, overrides and selection (Markdown lines)."""
    runs = summary.get("runs") or {}
    finished = sum("error" not in r for r in runs.values())
    quick, scale, jobs = summary.get("quick"), summary.get("epoch_scale", 1.0), summary.get("jobs", 1)
    setting = "**quick** (smoke-test setting: small subsets, few epochs — not the paper's numbers)" if quick \
        else "**full**"
    if scale != 1.0:
        setting += f", **epochs scaled by {scale:g}** (`--epoch-scale`: shorter than the paper's schedule)"
    run_time = summary.get("run_time_s")
    if run_time is None:
        run_time = sum(r.get("time_s") or 0.0 for r in runs.values())
    wall = summary.get("wall_time_s")
    head = [f"{'#' * level} stbin reproduce {title}", ""]
    if summary.get("command"):
        head += [f"Command: `{summary['command']}`", ""]
    head += [f"Setting: {setting}; seeds {summary.get('seeds')}; {len(runs)} runs, {finished} finished"
             + (f"; wall time of this invocation {wall:.0f} s" if wall is not None else "")
             + (f" ({jobs} runs at a time)" if jobs and jobs > 1 else "")
             + f"; training time of the finished runs {run_time:.0f} s in total (reused runs included, each "
             "measured when it trained)" + (f". Runs are in `{runs_dir}`." if runs_dir else "."), ""]
    devices = summary.get("devices") or (["unrecorded"] if finished else [])
    dataset = summary.get("dataset", "cifar10")
    used = sorted({str(r["dataset"]) for r in runs.values() if "error" not in r and r.get("dataset")})
    data = f"Dataset of the deep networks' rows: {dataset_label(dataset)} (`--dataset {dataset}`)."
    if used and dataset not in used:  # only other rows finished (e.g. LeNet-5 on MNIST): say what did run
        data = (f"Dataset of the finished runs: {', '.join(dataset_label(u) for u in used)} (no deep network's row "
                f"on {dataset_label(dataset)} finished).")
    head += [f"Device of the finished runs: {', '.join(devices) if devices else 'none finished'}"
             + (" (one torch thread per run)" if "cpu" in devices else "")
             + ("; bfloat16 autocast on CUDA (`--amp`)" if "--amp" in str(summary.get("command", "")) else "")
             + f". {data}", ""]
    for what, items in (("the recipe's own runs (`--set`)", summary.get("overrides")),
                        ("the deep networks' runs (`--deep-set`)", summary.get("deep_overrides"))):
        if items:
            head += [f"Overrides applied to {what}: {', '.join(f'`{o}`' for o in items)}.", ""]
    if summary.get("only"):
        head += [f"Runs selected with `--only {','.join(summary['only'])}` (and the runs they start from); the "
                 "others are reused when finished.", ""]
    return head


def cost_section(ctx: RecipeContext, group: Callable[[Run], str | None]) -> list[str]:
    """A "Cost" section: per group of finished runs (``group(run)``, None = left out) their number, epochs,
    training time (each run measured when it trained; a resumed run's parts summed) and training throughput
    (median over a run's epochs, then the mean over runs; the per-epoch evaluation is not in it)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in ctx.runs:
        g = group(run)
        if g is not None and "error" not in (rec := ctx.result(run.key)):
            groups.setdefault(g, []).append(rec)
    if not groups:
        return []

    def num(xs: list[float]) -> str:
        return f"{statistics.fmean(xs):.0f}" if xs else "—"

    rows = []
    for g, recs in groups.items():
        t = [r["time_s"] for r in recs if r.get("time_s")]
        ips = [r["images_per_s"] for r in recs if r.get("images_per_s")]
        ep = [e for r in recs if (e := r.get("epochs") or len(r.get("history") or []))]
        dev = sorted({str(r.get("device") or "unrecorded") for r in recs})
        rows.append(f"| {g} | {len(recs)} | {num(ep)} | {sum(t) / 3600:.2f} | {num(t)} | {num(ips)} | "
                    f"{', '.join(dev)} |")
    return ["", "## Cost", "", "Training time of the finished runs (each measured when it trained) and training "
            "throughput (median over a run's epochs, then the mean over runs; the evaluation after each epoch is "
            "not in it).", "",
            "| runs | finished | epochs per run | training time (h, total) | per run (s) | training images/s "
            "| device |", "|---|--:|--:|--:|--:|--:|---|"] + rows
