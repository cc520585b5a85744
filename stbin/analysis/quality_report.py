"""Writing gradient-quality results over a run's checkpoints: CSV, a plot and a Markdown report.

The plot shows, per method, the cosine of a single-sample estimate to the true gradient and
the relative bias of each layer's weight tensor against the training epoch, with 95 %
intervals; it is drawn through matplotlib's object API (no global backend switch) in the
colour-blind-safe palette of :mod:`stbin.analysis.plots`.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from stbin._io import atomic_write
from stbin.analysis.quality import METRICS, QualityResult
from stbin.reporting import table

FIELDS = ("epoch", "method", "tensor", "n_samples") + tuple(k for m in METRICS for k in (m, m + "_hw"))

# The paper of each reference gradient (stbin.analysis.reference.REFERENCES), cited in the report's header.
REFERENCE_PAPERS = {
    "local_expectation": "local expectations, Titsias & Lázaro-Gredilla, NeurIPS 2015",
    "disarm": "DisARM, Dong, Mnih & Tucker, NeurIPS 2020",
}


def layer_tensors(result: QualityResult) -> list[str]:
    """The weight tensor of every linear / convolutional layer (forward order), then ``all``."""
    return list(result.layers) + ["all"]


def _num(v: float, nd: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def write_csv(results: Sequence[tuple[int, QualityResult]], path: str | Path) -> Path:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for ep, res in results:
        for r in res.rows:
            w.writerow({**{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}, "epoch": ep})
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def plot(results: Sequence[tuple[int, QualityResult]], path: str | Path) -> Path:
    """Cosine and relative bias per layer against the epoch, one column per method."""
    from matplotlib.ticker import MaxNLocator

    from stbin.analysis.plots import new_figure, save_figure, series_style
    res0 = results[0][1]
    methods = list(dict.fromkeys(r["method"] for r in res0.rows))
    layers = layer_tensors(res0)
    fig = new_figure((3.4 * len(methods), 6.0))
    axes = fig.subplots(2, len(methods), squeeze=False, sharex=True)
    eps = [ep for ep, _ in results]
    for j, m in enumerate(methods):
        for row_i, metric in enumerate(("cosine", "rel_bias")):
            ax = axes[row_i][j]
            for k, t in enumerate(layers):
                vals = [res.get(m, t, metric) for _, res in results]
                hws = [res.get(m, t, metric + "_hw") for _, res in results]
                st = series_style(k)
                ax.errorbar(eps, vals, yerr=[0 if not math.isfinite(h) else h for h in hws], color=st["color"],
                            ls=st["ls"], marker=st["marker"], ms=4, lw=1.3, capsize=2, label=t)
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row_i == 0:
                ax.set_title(m)
                ax.set_ylim(-0.05, 1.02)
            else:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel("cosine to true gradient" if metric == "cosine" else "relative bias")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Gradient quality per layer (single-sample estimates, 95% intervals)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return Path(save_figure(fig, str(path)))


def write_report(results: Sequence[tuple[int, QualityResult]], out_dir: str | Path, command: str,
                 source: str, batch: int, figure: str | None) -> Path:
    """``report.md``: one table per checkpoint (layer x method, cosine and relative bias with intervals)."""
    out = Path(out_dir)
    res0 = results[0][1]
    lines = [
        "# Gradient quality against the true gradient", "",
        f"Command: `{command}`. Source: `{source}`; a fixed batch of the first {batch} test images. "
        f"Reference: {res0.reference.replace('_', ' ')} (unbiased; {REFERENCE_PAPERS.get(res0.reference, 'see stbin.analysis.reference')}), "
        f"averaged until every cosine interval half-width is below "
        f"{res0.tolerance:g} or the budget is spent. Batch norm uses its running statistics; stochastic units "
        "and Bernoulli weights are sampled.", "",
        "Columns: `cosine` = mean cosine of a single-sample estimate to the true gradient; `bias` = "
        "‖E[estimate] − true‖ / ‖true‖; `rmse` = relative RMSE of one sample; each ± its 95% interval "
        "half-width. Deterministic proxies have no variance: their cosine is the cosine of their bias.", "",
    ]
    for ep, res in results:
        layers = layer_tensors(res)
        methods = list(dict.fromkeys(r["method"] for r in res.rows))
        lines += [f"## Epoch {ep}", "", f"{res.message}.", ""]
        body = []
        for t in layers:
            cells = [t]
            for m in methods:
                r = next(r for r in res.rows if r["method"] == m and r["tensor"] == t)
                cells.append(f"{_num(r['cosine'])} ± {_num(r['cosine_hw'])} / {_num(r['rel_bias'])} ± "
                             f"{_num(r['rel_bias_hw'])} / {_num(r['rel_rmse'], 2)}")
            body.append(cells)
        lines += ["Cells: cosine / bias / rmse.", "", table(["layer"] + methods, body), ""]
    if figure:
        name = Path(figure).name
        lines += ["## Figure", "", f"![{name}]({name})", ""]
    lines += ["## Files", "", "- `quality.csv`: every metric with its half-width per checkpoint, method and "
              "parameter tensor.", ""]
    return atomic_write(out / "report.md", lambda f: f.write("\n".join(lines).encode()))


__all__ = ["FIELDS", "layer_tensors", "plot", "write_csv", "write_report"]
