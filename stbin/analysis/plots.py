"""Figures of the estimator lab: cosine and relative RMSE against M per layer, and the sweeps.

Figures are drawn through matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), so the
global backend of a notebook or application is never touched. Colours come from a
colour-blind-safe palette (Okabe & Ito), with line styles and markers that keep up to 12
series apart.
"""

from __future__ import annotations

import math
import os
from typing import Any

from stbin.analysis.lab_rows import SWEEPS, Rows, fmt_key, is_deterministic, lab_layers, sweep_values
from stbin.analysis.protocol import LabResult

#: Okabe & Ito's colour-blind-safe palette (black last)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_LINES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "v", "D", "x")


def series_style(k: int) -> dict[str, Any]:
    """Colour, line style and marker of the k-th series: distinct for k < 12 (colour and line style vary
    at different rates)."""
    return {"color": PALETTE[k % len(PALETTE)], "ls": _LINES[(k // len(PALETTE) + k) % len(_LINES)],
            "marker": _MARKERS[k % len(_MARKERS)]}


def _style(m: str, k: int) -> tuple[str, str, str]:
    st = series_style(k)
    return st["color"], st["ls"], st["marker"]


def new_figure(figsize: tuple[float, float]):
    """A matplotlib ``Figure`` with an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as PNG (atomically) and return ``path``."""
    from stbin._io import atomic_write
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    return path


def plot_protocol(result: LabResult, out_dir: str) -> list[str]:
    """One PNG per snapshot: cosine (mean, 15-85% band) and relative RMSE vs M, per layer, per estimator."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    layers = lab_layers(ix)
    methods = list(cfg.methods)
    paths = []
    for ep in sorted(ix.values("epoch", experiment="protocol")):
        ms = sorted(ix.values("M", experiment="protocol", epoch=ep))
        fig = new_figure((3.6 * len(layers), 7.0))
        axes = fig.subplots(2, len(layers), squeeze=False, sharex=True)
        for j, layer in enumerate(layers):
            ax_c, ax_r = axes[0][j], axes[1][j]
            for k, m in enumerate(methods):
                color, ls, mk = _style(m, k)
                cos = [ix.get("protocol", ep, base, m, layer, M, "cos_mean") for M in ms]
                lo = [ix.get("protocol", ep, base, m, layer, M, "cos_p15") for M in ms]
                hi = [ix.get("protocol", ep, base, m, layer, M, "cos_p85") for M in ms]
                rm = [ix.get("protocol", ep, base, m, layer, M, "rel_rmse") for M in ms]
                ax_c.plot(ms, cos, color=color, ls=ls, marker=mk, ms=3, lw=1.3, label=m)
                if not is_deterministic(m):
                    ax_c.fill_between(ms, lo, hi, color=color, alpha=0.08, lw=0)
                ax_r.plot(ms, rm, color=color, ls=ls, marker=mk, ms=3, lw=1.3, label=m)
            ax_c.set_title(layer)
            ax_c.set_xscale("log")
            ax_c.set_ylim(-1.02, 1.02)
            ax_c.axhline(1.0, color="k", lw=0.5)
            ax_c.grid(True, which="both", alpha=0.3)
            ax_r.set_xscale("log")
            ax_r.set_yscale("log")
            ax_r.grid(True, which="both", alpha=0.3)
            ax_r.set_xlabel("M (samples averaged)")
        axes[0][0].set_ylabel("cosine to exact gradient\n(mean, band 15-85%)")
        axes[1][0].set_ylabel("relative RMSE")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
        fig.suptitle(f"Gradient estimators vs exact gradient, {cfg.depth} x {cfg.width} {cfg.noise} "
                     f"(s={cfg.scale:g}) network, snapshot after {ep} epochs")
        fig.tight_layout(rect=(0, 0.07, 1, 0.96))
        path = os.path.join(out_dir, f"estimators_epoch{ep}.png")
        save_figure(fig, path)
        paths.append(path)
    return paths



def plot_sweeps(result: LabResult, out_dir: str) -> list[str]:
    """One PNG: cosine at M=1 and at the largest sweep M (first layer and all parameters) vs each swept quantity."""
    ix = Rows(result.rows)
    present = [s for s in SWEEPS if ix.values("estimator", experiment=s[0])]
    if not present:
        return []
    cfg = result.config
    m_hi = max(cfg.sweep_ms)
    panels = [("layer1", 1), ("all", 1), ("layer1", m_hi), ("all", m_hi)]
    fig = new_figure((3.8 * len(present), 2.6 * len(panels)))
    axes = fig.subplots(len(panels), len(present), squeeze=False)
    for j, (exp, key, label) in enumerate(present):
        rows = [r for r in result.rows if r["experiment"] == exp]
        xs = sweep_values(rows, key)
        for i, (tensor, M) in enumerate(panels):
            ax = axes[i][j]
            for k, m in enumerate(cfg.methods):
                color, ls, mk = _style(m, k)
                ys = []
                for v in xs:
                    r = next((r for r in rows if r[key] == v and r["estimator"] == m and r["tensor"] == tensor
                              and r["M"] == M), None)
                    ys.append(math.nan if r is None else r["cos_mean"])
                pos = list(range(len(xs))) if key == "noise" else xs
                ax.plot(pos, ys, color=color, ls=ls, marker=mk, ms=4, lw=1.3, label=m)
            if key == "scale":
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(pos)
            ax.set_xticklabels([fmt_key(v) for v in xs])
            ax.set_ylim(-1.02, 1.02)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"cosine, {tensor}, M={M}")
            if i == len(panels) - 1:
                ax.set_xlabel(label)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"Sweeps (snapshots after {cfg.sweep_epochs} epochs, {cfg.sweep_estimates} estimates)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    path = os.path.join(out_dir, "sweeps.png")
    save_figure(fig, path)
    return [path]
