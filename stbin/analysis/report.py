"""Writing the estimator lab's results: the CSV of all metrics and the Markdown report.

The figures are in :mod:`stbin.analysis.plots`, the computed findings in
:mod:`stbin.analysis.findings`, the row index in :mod:`stbin.analysis.lab_rows`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Sequence

from stbin._io import atomic_write
from stbin.analysis.findings import findings
from stbin.analysis.lab_rows import Rows, fmt, headline_epoch, headline_ms, lab_layers
from stbin.analysis.plots import plot_protocol, plot_sweeps
from stbin.analysis.protocol import ROW_FIELDS, LabResult

__all__ = ["bias_table", "findings", "headline_epoch", "headline_table", "md_escape", "plot_protocol", "plot_sweeps",
           "write_csv", "write_report"]


def md_escape(text: str) -> str:
    """Escape ``|`` (and backslashes) so that ``text`` stays inside one Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|")


# -- CSV ----------------------------------------------------------------------------------

def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
    """All metric rows, columns :data:`stbin.analysis.protocol.ROW_FIELDS`."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in ROW_FIELDS})
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def headline_table(result: LabResult, field: str) -> str:
    """Markdown table, estimator x layer, cells ``value at M=1 / value at M=100`` on the headline snapshot."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    ep = headline_epoch(result)
    m1, m2 = headline_ms(result)
    layers = lab_layers(ix)
    lines = ["| estimator | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for m in cfg.methods:
        cells = [f"{fmt(ix.get('protocol', ep, base, m, t, m1, field))} / {fmt(ix.get('protocol', ep, base, m, t, m2, field))}"
                 for t in layers]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_table(result: LabResult, estimator: str) -> str:
    """Markdown table, snapshot x layer, of an estimator's relative bias."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    layers = lab_layers(ix)
    lines = ["| epoch | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for s in result.snapshots:
        ep = s["epoch"]
        lines.append(f"| {ep} | " + " | ".join(fmt(ix.get("protocol", ep, base, estimator, t, 1, "rel_bias"))
                                               for t in layers) + " |")
    return "\n".join(lines)


def write_report(result: LabResult, out_dir: str, figures: Sequence[str], csv_name: str = "metrics.csv",
                 command: str = "stbin estimator-lab") -> str:
    """Write ``report.md`` in ``out_dir``; return its path."""
    cfg = result.config
    ep = headline_epoch(result)
    m1, m2 = headline_ms(result)
    ms = sorted(M for M in cfg.ms if M <= cfg.n_estimates)
    t = result.timings
    lines = [
        "# Gradient-estimator accuracy against the exact gradient",
        "",
        f"Command: `{command}`. Network: {cfg.depth} hidden layers x {cfg.width} stochastic binary units "
        f"({cfg.noise} noise, scale {cfg.scale:g}), linear 1-logit output, logistic loss; data: "
        f"{2 * cfg.n_per_class} points of the two-class data of the estimator study of Shekhovtsov, Yanush & Flach (NeurIPS 2020). Trained with SGD (lr 0.03, "
        f"momentum 0.9, batch 10) on the exact expected loss; snapshots after {', '.join(map(str, cfg.epochs))} "
        f"epochs. On each snapshot: the exact gradient of the mean loss over all points (enumeration), and "
        f"{cfg.n_estimates} single-sample estimates per estimator averaged in groups of M = "
        f"{', '.join(map(str, ms))}. Seed {cfg.seed}.",
        "",
    ]
    from stbin.analysis.gradient_estimators import parse_method
    lines += ["Estimators (definitions and proofs of unbiasedness: docs/estimator-lab.md):", ""]
    for m in cfg.methods:
        info, temp = parse_method(m)
        desc = info.description.replace("temperature T", f"temperature {temp:g}") if temp is not None else \
            info.description
        lines.append(f"- `{m}`: {desc}")
    lines.append("")
    if cfg.n_estimates < 20000 or max(cfg.ms) < 9000:
        lines += [f"*Reduced run*: {cfg.n_estimates} estimates per estimator and M up to {ms[-1]} "
                  f"(the reference protocol uses 20000 and M up to 9000).", ""]
    lines += ["## Snapshots", "", "| epoch | exact expected loss | expected error | norm of exact gradient |",
              "|---|---|---|---|"]
    for s in result.snapshots:
        lines.append(f"| {s['epoch']} | {fmt(s['expected_loss'], 4)} | {fmt(s['expected_error'], 4)} | "
                     f"{fmt(s['grad_norm'], 4)} |")
    if "st" in cfg.methods:
        lines += ["", "Relative bias of ST (`||E[g_ST] - g|| / ||g||`, from all estimates) per layer and snapshot:", "",
                  bias_table(result, "st")]
    lines += ["", f"## Headline (snapshot after {ep} epochs)", "",
              f"Mean cosine similarity to the exact gradient, `M={m1} / M={m2}` "
              "(layerK = hidden layer K's weight and bias, output = the output layer, all = every parameter):", "",
              headline_table(result, "cos_mean"), "",
              f"Relative RMSE, `M={m1} / M={m2}`:", "", headline_table(result, "rel_rmse"), "",
              "## Findings (computed from the numbers above and in the CSV)", ""]
    lines += [f"- {s}" for s in findings(result)]
    lines += ["", "## Figures", ""]
    for fpath in figures:
        name = os.path.basename(fpath)
        lines += [f"![{name}]({name})", ""]
    lines += ["## Files and timing", "",
              f"- `{csv_name}`: every metric (bias, variance, relative RMSE, cosine mean and 15/85 percentiles) "
              "per estimator, parameter tensor, layer and M, for the protocol and the sweeps.",
              f"- Exact gradients of this network over {int(t.get('exact_gradients_points', 0))} points: "
              f"{fmt(t.get('exact_gradients_s', math.nan) * 1000, 2)} ms (median).",
              f"- Wall time: training {fmt(t.get('training_s', math.nan), 1)} s, estimators "
              f"{fmt(t.get('estimators_s', math.nan), 1)} s, sweeps {fmt(t.get('sweeps_s', 0.0), 1)} s, total "
              f"{fmt(t.get('total_s', math.nan), 1)} s.", ""]
    path = os.path.join(out_dir, "report.md")
    atomic_write(path, lambda f: f.write("\n".join(lines).encode()))
    return path
