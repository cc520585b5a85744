"""The figures of the theory report, drawn with :mod:`stbin.reporting` (matplotlib's object
API; the global backend is never touched)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from stbin.reporting import colormap, new_figure, save_figure, series_style, series_styles
from stbin.theory import two_layer as tl

#: One style per STE, the same in every figure (colour and line style; no markers on
#: lines of thousands of iterates).
STE_STYLES: dict[str, dict[str, Any]] = series_styles(tl.STES, marker=False)


def plot_descent(runs: list[dict[str, Any]], kind: str, title: str, path: Path, log_loss: bool = True) -> None:
    """Loss, angle and ||w|| against iteration + 1 (log axis: early and late phases both show)."""
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    for r in runs:
        if r["kind"] != kind:
            continue
        t = r["traj"]
        style = STE_STYLES[r["ste"]]
        it = np.arange(1, t.loss.size + 1)
        loss = np.maximum(t.loss, 1e-17) if log_loss else t.loss
        axes[0].plot(it, loss, lw=1.2, alpha=0.8, label=r["ste"], **style)
        axes[1].plot(it, t.angle, lw=1.2, alpha=0.8, **style)
        axes[2].plot(it, t.w_norm, lw=1.2, alpha=0.8, **style)
    for ax in axes:
        ax.set_xscale("log")
    if log_loss:
        axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].set(xlabel="iteration + 1", ylabel="population loss f" + (" (log)" if log_loss else ""), title="loss")
    axes[1].set(xlabel="iteration + 1", ylabel="angle theta(w, w*) [rad]", title="angle")
    axes[1].axhline(math.pi, color="gray", ls=":", lw=0.8)
    axes[2].set(xlabel="iteration + 1", ylabel="||w|| (log)", title="filter norm")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys())
    fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
    save_figure(fig, path, dpi=110)


def plot_sampled(sampled: list[dict[str, Any]], batch: int, path: Path) -> None:
    fig, ax = new_figure(figsize=(7, 4.2))
    for r in sampled:
        ax.semilogy(np.maximum(r["traj"].loss, 1e-17), lw=1, label=r["ste"], **STE_STYLES[r["ste"]])
    ax.set(xlabel="iteration", ylabel="population loss f (log)",
           title=f"sampled coarse gradient descent, {batch} samples per step")
    ax.legend()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    save_figure(fig, path, dpi=110)


def plot_collapse(smaller: list[dict[str, Any]], path: Path) -> None:
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    for i, r in enumerate(smaller):
        t = r["traj"]
        style = series_style(i, marker=False)
        time_axis = r["lr"] * np.arange(t.loss.size)
        lab = f"lr={r['lr']:g}"
        axes[0].plot(time_axis, t.loss, label=lab, **style)
        axes[1].plot(time_axis, t.angle, label=lab, **style)
        axes[2].semilogy(time_axis, t.w_norm, label=lab, **style)
    axes[0].set(xlabel="lr x iteration", ylabel="population loss f", title="loss")
    axes[1].set(xlabel="lr x iteration", ylabel="angle theta [rad]", title="angle")
    axes[2].set(xlabel="lr x iteration", ylabel="||w|| (log)", title="filter norm")
    axes[0].legend()
    fig.suptitle("ReLU STE: a random start whose iterates pass near w = 0, at three learning rates")
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
    save_figure(fig, path, dpi=110)


def plot_one_step(res: dict[str, Any], path: Path) -> None:
    lrs = res["lrs"]
    fig, axes = new_figure(3, 3, figsize=(15, 11), sharex=True)
    cmap = colormap("viridis")  # N is ordered: a sequential map
    for j, ste in enumerate(tl.STES):
        d = res["by_ste"][ste]
        sizes = sorted(d["per_n"])
        for i, N in enumerate(sizes):
            col = cmap(i / max(len(sizes) - 1, 1))
            e = d["per_n"][N]
            for row, key in ((0, "joint"), (1, "w")):
                mean, se = e[f"{key}_mean"], e[f"{key}_se"]
                axes[row, j].plot(lrs, mean, color=col, marker=".", label=f"N={N}")
                axes[row, j].fill_between(lrs, mean - 2 * se, mean + 2 * se, color=col, alpha=0.15)
            axes[2, j].plot(lrs, e["p_dec"], color=col, marker=".", label=f"P(decrease), N={N}")
            axes[2, j].plot(lrs, e["p_zero"], color=col, ls="--", label=f"P(no change), N={N}")
        axes[0, j].plot(lrs, d["pop_joint"], color="black", lw=2, label="population f, E-gradient")
        axes[1, j].plot(lrs, d["pop_w"], color="black", lw=2, label="population f, E-gradient")
        for row in (0, 1):
            axes[row, j].set_xscale("log")
            axes[row, j].set_yscale("symlog", linthresh=1e-5)
            axes[row, j].axhline(0, color="gray", lw=0.8)
        axes[0, j].set_title(f"{ste}: step in (v, w)")
        axes[1, j].set_title(f"{ste}: step in w only")
        axes[2, j].set_title(f"{ste}: w-only step, sign of the change")
        axes[2, j].set_xscale("log")
        axes[2, j].set_xlabel("learning rate")
        axes[2, j].set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("mean change of empirical loss (symlog)")
    axes[1, 0].set_ylabel("mean change of empirical loss (symlog)")
    axes[2, 0].set_ylabel("fraction of draws")
    axes[0, 0].legend(fontsize=8)
    axes[2, 0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"one coarse-gradient step on the empirical loss of N samples "
                 f"(theta = {res['theta']:.2f}, f = {res['f0']:.3f}); band: mean +- 2 s.e.")
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.06, top=0.93, wspace=0.22, hspace=0.25)
    save_figure(fig, path, dpi=100)


def plot_correlation(res: dict[str, Any], path: Path) -> None:
    th = res["thetas"]
    fig, axes = new_figure(1, 2, figsize=(13, 4.5))
    for ste in tl.STES:
        for norm, vals in res["curves"][ste].items():
            ls = {0.5: ":", 1.0: "-", 2.0: "--"}[norm]
            axes[0].plot(th, vals, color=STE_STYLES[ste]["color"], ls=ls, label=f"{ste}, ||w||={norm:g} (closed form)")
        mc = res["mc"][ste]
        axes[0].errorbar(res["mc_thetas"], mc["value"], yerr=2 * mc["se"], fmt="o", ms=4, capsize=3,
                         color=STE_STYLES[ste]["color"], label=f"{ste} Monte Carlo (+-2 s.e.)")
        axes[1].plot(th, res["cosines"][ste], label=ste, **STE_STYLES[ste])
    axes[0].set(xlabel="theta(w, w*) [rad]", ylabel="||w|| <E g, df/dw> / (v^T v*)^2",
                title="correlation of expected coarse and true gradient (||w||=1 unless noted)")
    axes[0].axhline(0, color="gray", lw=0.8)
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="theta(w, w*) [rad]", ylabel="cos angle(E g_w, df/dw)",
                title="cosine between expected coarse and true w-gradient (||w||=1)")
    axes[1].axhline(0, color="gray", lw=0.8)
    axes[1].legend()
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.92, wspace=0.2)
    save_figure(fig, path, dpi=110)
