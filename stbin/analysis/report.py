"""Writing the estimator lab's results: CSV of all metrics, PNG plots and a Markdown report.

The report's findings are computed from the measured rows (comparisons, rankings, the
number of samples an unbiased estimator needs to match ST); nothing in it is fixed text
about which estimator wins.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Iterable, Sequence

from stbin.analysis.protocol import ROW_FIELDS, LabResult

UNBIASED = ("reinforce", "reinforce_baseline", "arm", "disarm")
DETERMINISTIC = ("det_htanh", "det_tanh", "det_identity")

_STYLE = {
    "st": ("#d62728", "-", "o"),
    "det_htanh": ("#8c564b", ":", "s"),
    "det_tanh": ("#e377c2", ":", "^"),
    "det_identity": ("#7f7f7f", ":", "v"),
    "reinforce": ("#1f77b4", "--", "o"),
    "reinforce_baseline": ("#17becf", "--", "s"),
    "arm": ("#2ca02c", "--", "^"),
    "disarm": ("#bcbd22", "--", "v"),
    "concrete:0.1": ("#9467bd", "-.", "o"),
    "concrete:1": ("#c5b0d5", "-.", "s"),
    "st_concrete:0.1": ("#ff7f0e", "-.", "^"),
    "st_concrete:1": ("#ffbb78", "-.", "v"),
}


def _style(m: str, k: int) -> tuple[str, str, str]:
    if m in _STYLE:
        return _STYLE[m]
    colors = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
    return colors[k % len(colors)], "-", "x"


class Rows:
    """Index of metric rows for lookups by (experiment, config, estimator, tensor, M)."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self._ix = {self._key(r): r for r in self.rows}

    @staticmethod
    def _key(r: dict[str, Any]) -> tuple:
        return (r["experiment"], r["epoch"], r["depth"], r["width"], r["noise"], float(r["scale"]),
                r["estimator"], r["tensor"], r["M"])

    def get(self, experiment: str, epoch: int, cfg: dict[str, Any], estimator: str, tensor: str, M: int,
            field: str) -> float:
        r = self._ix.get((experiment, epoch, cfg["depth"], cfg["width"], cfg["noise"], float(cfg["scale"]),
                          estimator, tensor, M))
        return math.nan if r is None else float(r[field])

    def values(self, field: str, **eq: Any) -> list[Any]:
        out = []
        for r in self.rows:
            if all(r[k] == v for k, v in eq.items()) and r[field] not in out:
                out.append(r[field])
        return out


# -- CSV ----------------------------------------------------------------------------------

def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
    """All metric rows, columns :data:`stbin.analysis.protocol.ROW_FIELDS`."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in ROW_FIELDS})


# -- plots --------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _layers(ix: Rows, experiment: str = "protocol") -> list[str]:
    ts = ix.values("tensor", experiment=experiment)
    return [t for t in ts if t.startswith("layer")] + [t for t in ts if t == "output"] + \
        [t for t in ts if t == "all"]


def plot_protocol(result: LabResult, out_dir: str) -> list[str]:
    """One PNG per snapshot: cosine (mean, 15-85% band) and relative RMSE vs M, per layer, per estimator."""
    plt = _plt()
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    layers = _layers(ix)
    methods = list(cfg.methods)
    paths = []
    for ep in sorted(ix.values("epoch", experiment="protocol")):
        ms = sorted(ix.values("M", experiment="protocol", epoch=ep))
        fig, axes = plt.subplots(2, len(layers), figsize=(3.6 * len(layers), 7.0), squeeze=False, sharex=True)
        for j, layer in enumerate(layers):
            ax_c, ax_r = axes[0][j], axes[1][j]
            for k, m in enumerate(methods):
                color, ls, mk = _style(m, k)
                cos = [ix.get("protocol", ep, base, m, layer, M, "cos_mean") for M in ms]
                lo = [ix.get("protocol", ep, base, m, layer, M, "cos_p15") for M in ms]
                hi = [ix.get("protocol", ep, base, m, layer, M, "cos_p85") for M in ms]
                rm = [ix.get("protocol", ep, base, m, layer, M, "rel_rmse") for M in ms]
                ax_c.plot(ms, cos, color=color, ls=ls, marker=mk, ms=3, lw=1.3, label=m)
                if m not in DETERMINISTIC:
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
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


_SWEEPS = (("sweep:depth", "depth", "depth (hidden layers)"), ("sweep:width", "width", "width (units per layer)"),
           ("sweep:scale", "scale", "noise scale s"), ("sweep:noise", "noise", "noise family"))


def plot_sweeps(result: LabResult, out_dir: str) -> list[str]:
    """One PNG: cosine at M=1 and at the largest sweep M (first layer and all parameters) vs each swept quantity."""
    ix = Rows(result.rows)
    present = [s for s in _SWEEPS if ix.values("estimator", experiment=s[0])]
    if not present:
        return []
    plt = _plt()
    cfg = result.config
    m_hi = max(cfg.sweep_ms)
    panels = [("layer1", 1), ("all", 1), ("layer1", m_hi), ("all", m_hi)]
    fig, axes = plt.subplots(len(panels), len(present), figsize=(3.8 * len(present), 2.6 * len(panels)),
                             squeeze=False)
    for j, (exp, key, label) in enumerate(present):
        rows = [r for r in result.rows if r["experiment"] == exp]
        xs = []
        for r in rows:
            if r[key] not in xs:
                xs.append(r[key])
        if key != "noise":
            xs = sorted(xs)
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
            ax.set_xticklabels([_fmtkey(v) for v in xs])
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- Markdown -----------------------------------------------------------------------------

def _f(v: float, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v != 0 and (abs(v) >= 1000 or abs(v) < 10 ** (-nd)):
        return f"{v:.2e}"
    return f"{v:.{nd}f}"


def headline_epoch(result: LabResult) -> int:
    """The snapshot the report's headline uses: epoch 100 if measured, else the middle one."""
    eps = sorted(s["epoch"] for s in result.snapshots)
    return 100 if 100 in eps else eps[len(eps) // 2]


def headline_ms(result: LabResult) -> tuple[int, int]:
    ms = sorted(M for M in result.config.ms if M <= result.config.n_estimates)
    return ms[0], (100 if 100 in ms else ms[-1])


def headline_table(result: LabResult, field: str) -> str:
    """Markdown table, estimator x layer, cells ``value at M=1 / value at M=100`` on the headline snapshot."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    ep = headline_epoch(result)
    m1, m2 = headline_ms(result)
    layers = _layers(ix)
    lines = ["| estimator | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for m in cfg.methods:
        cells = [f"{_f(ix.get('protocol', ep, base, m, t, m1, field))} / {_f(ix.get('protocol', ep, base, m, t, m2, field))}"
                 for t in layers]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_table(result: LabResult, estimator: str) -> str:
    """Markdown table, snapshot x layer, of an estimator's relative bias."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    layers = _layers(ix)
    lines = ["| epoch | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for s in result.snapshots:
        ep = s["epoch"]
        lines.append(f"| {ep} | " + " | ".join(_f(ix.get("protocol", ep, base, estimator, t, 1, "rel_bias"))
                                               for t in layers) + " |")
    return "\n".join(lines)


def _samples_to_match(ix: Rows, ep: int, base: dict, method: str, tensor: str, target: float,
                      ms: Sequence[int]) -> int | None:
    for M in ms:
        v = ix.get("protocol", ep, base, method, tensor, M, "cos_mean")
        if not math.isnan(v) and v >= target:
            return M
    return None


def findings(result: LabResult) -> list[str]:
    """Statements computed from the measured numbers (every number in them is measured)."""
    ix = Rows(result.rows)
    cfg = result.config
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    ep = headline_epoch(result)
    ms = sorted(M for M in cfg.ms if M <= cfg.n_estimates)
    m_max = ms[-1]
    layers = [t for t in _layers(ix) if t != "all"]
    hidden = [t for t in layers if t.startswith("layer")]
    methods = list(cfg.methods)
    unb = [m for m in methods if m in UNBIASED]
    out: list[str] = []

    def cos(m: str, t: str, M: int, e: int = ep) -> float:
        return ix.get("protocol", e, base, m, t, M, "cos_mean")

    # 1. best estimator per layer at M = 1
    parts = []
    for t in layers:
        vals = {m: cos(m, t, 1) for m in methods}
        best = max(vals, key=lambda m: -math.inf if math.isnan(vals[m]) else vals[m])
        parts.append(f"{t}: **{best}** ({_f(vals[best])})")
    out.append(f"Highest mean cosine at M = 1 (snapshot after {ep} epochs): " + "; ".join(parts) + ".")

    # 2. ST vs the unbiased estimators at M = 1, per hidden layer
    if "st" in methods and unb:
        for t in hidden:
            st1 = cos("st", t, 1)
            others = {m: cos(m, t, 1) for m in unb}
            best = max(others, key=lambda m: -math.inf if math.isnan(others[m]) else others[m])
            if st1 > others[best]:
                txt = (f"On {t} at M = 1, ST has mean cosine {_f(st1)}, higher than every unbiased estimator "
                       f"(best: {best} {_f(others[best])}")
                if "reinforce" in others and best != "reinforce":
                    txt += f"; REINFORCE without baseline {_f(others['reinforce'])}"
                out.append(txt + ").")
            else:
                out.append(f"On {t} at M = 1, ST has mean cosine {_f(st1)}, below {best} ({_f(others[best])}).")
        # 3. samples the unbiased estimators need to match single-sample ST
        for t in (hidden[0] if hidden else None, "all"):
            if t is None:
                continue
            target = cos("st", t, 1)
            parts = []
            for m in unb:
                need = _samples_to_match(ix, ep, base, m, t, target, ms)
                parts.append(f"{m}: M = {need}" if need is not None else f"{m}: not reached for M <= {m_max}")
            out.append(f"Samples an unbiased estimator must average to reach ST's single-sample mean cosine "
                       f"({_f(target)}) on {t}: " + "; ".join(parts) + ".")
        # 4. ST's bias: cosine at the largest M vs unbiased
        for t in ("all",) + tuple(hidden[:1]):
            st_hi = cos("st", t, m_max)
            rb = ix.get("protocol", ep, base, "st", t, 1, "rel_bias")
            ub = {m: cos(m, t, m_max) for m in unb}
            ub_txt = ", ".join(f"{m} {_f(v)}" for m, v in ub.items())
            verdict = ("so ST's bias, not its variance, limits it at large M"
                       if all(not math.isnan(v) and v > st_hi for v in ub.values()) else
                       "so at this M the unbiased estimators have not yet overtaken it everywhere")
            out.append(f"At M = {m_max} on {t}, ST's cosine is {_f(st_hi)} (relative bias {_f(rb)}) while the "
                       f"unbiased estimators reach {ub_txt}; {verdict}.")
        # 5. bias of ST across training
        eps = sorted(s["epoch"] for s in result.snapshots)
        if len(eps) > 1:
            rbs = [ix.get("protocol", e, base, "st", "all", 1, "rel_bias") for e in eps]
            steps = [b - a for a, b in zip(rbs, rbs[1:])]
            if all(d > 0 for d in steps):
                trend = "it grows as training proceeds"
            elif all(d < 0 for d in steps):
                trend = "it shrinks as training proceeds"
            else:
                trend = (f"not monotone; {'larger' if rbs[-1] > rbs[0] else 'smaller'} at the last snapshot than "
                         f"at the first")
            out.append("ST's relative bias (all parameters) after " + ", ".join(f"{e} epochs: {_f(v)}"
                       for e, v in zip(eps, rbs)) + f" — {trend}.")
        # 5b. ST vs the best unbiased estimator at M = 1 across training
        if len(eps) > 1 and hidden:
            t = hidden[0]
            parts = []
            for e in eps:
                vals = {m: cos(m, t, 1, e) for m in unb}
                bu = max(vals, key=lambda m: -math.inf if math.isnan(vals[m]) else vals[m])
                parts.append(f"after {e} epochs ST {_f(cos('st', t, 1, e))} vs {bu} {_f(vals[bu])}")
            out.append(f"Single-sample mean cosine on {t} across training (ST vs the best unbiased estimator): "
                       + "; ".join(parts) + ".")
        # 6. ST across layers
        if len(hidden) > 1:
            vals = [(t, cos("st", t, 1)) for t in hidden]
            worst = min(vals, key=lambda tv: tv[1])
            out.append("ST's mean cosine at M = 1 by hidden layer: " + ", ".join(f"{t} {_f(v)}" for t, v in vals)
                       + f"; lowest on {worst[0]}.")
    # 7. deterministic proxies
    dets = [m for m in methods if m in DETERMINISTIC]
    if dets:
        t = hidden[0] if hidden else "all"
        parts = [f"{m} {_f(cos(m, t, 1))} / {_f(cos(m, 'all', 1))}" for m in dets]
        txt = ("Deterministic ST at the mode (zero variance, so the same at every M), cosine on "
               f"{t} / all parameters: " + "; ".join(parts))
        if "st" in methods:
            txt += (f"; the stochastic ST reaches {_f(cos('st', t, 1))} / {_f(cos('st', 'all', 1))} at M = 1 "
                    f"and {_f(cos('st', t, m_max))} / {_f(cos('st', 'all', m_max))} at M = {m_max}")
        out.append(txt + ".")
    # 8. Concrete temperatures
    conc = [m for m in methods if m.startswith("concrete") or m.startswith("st_concrete")]
    if conc:
        parts = [f"{m} {_f(cos(m, 'all', 1))} -> {_f(cos(m, 'all', m_max))}" for m in conc]
        best_hi = max(conc, key=lambda m: -math.inf if math.isnan(cos(m, "all", m_max)) else cos(m, "all", m_max))
        out.append(f"Concrete relaxations, cosine on all parameters at M = 1 -> M = {m_max}: " + "; ".join(parts)
                   + f"; best at large M: {best_hi}.")
    # 9. RMSE ranking at M = 1
    rm = {m: ix.get("protocol", ep, base, m, "all", 1, "rel_rmse") for m in methods}
    order = sorted((m for m in rm if not math.isnan(rm[m])), key=lambda m: rm[m])
    if order:
        out.append("Relative RMSE on all parameters at M = 1, lowest first: "
                   + ", ".join(f"{m} {_f(rm[m])}" for m in order) + ".")
    # 10. sweeps
    for exp, key, label in _SWEEPS:
        rows = [r for r in result.rows if r["experiment"] == exp and r["tensor"] == "all" and r["M"] == 1]
        if not rows:
            continue
        xs = []
        for r in rows:
            if r[key] not in xs:
                xs.append(r[key])
        if key != "noise":
            xs = sorted(xs)

        def val(m: str, v: Any) -> float:
            r = next((r for r in rows if r["estimator"] == m and r[key] == v), None)
            return math.nan if r is None else r["cos_mean"]

        parts = []
        for m in [m for m in ("st", "arm", "reinforce") if m in methods]:
            seq = [val(m, v) for v in xs]
            parts.append(f"{m} " + ", ".join(f"{_fmtkey(v)}: {_f(c)}" for v, c in zip(xs, seq)))
        if "st" in methods:
            wins = sum(1 for v in xs if all(val("st", v) > val(m, v) for m in unb))
            parts_txt = "; ".join(parts)
            out.append(f"Sweep over {label}, mean cosine on all parameters at M = 1 — {parts_txt}. ST beats every "
                       f"unbiased estimator at M = 1 in {wins} of {len(xs)} settings.")
    return out


def _fmtkey(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def write_report(result: LabResult, out_dir: str, figures: Sequence[str], csv_name: str = "metrics.csv",
                 command: str = "stbin estimators") -> str:
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
        f"{2 * cfg.n_per_class} points of the two-class protocol data (SPEC A4). Trained with SGD (lr 0.03, "
        f"momentum 0.9, batch 10) on the exact expected loss; snapshots after {', '.join(map(str, cfg.epochs))} "
        f"epochs. On each snapshot: the exact gradient of the mean loss over all points (enumeration), and "
        f"{cfg.n_estimates} single-sample estimates per estimator averaged in groups of M = "
        f"{', '.join(map(str, ms))}. Seed {cfg.seed}.",
        "",
    ]
    from stbin.analysis.estimators import parse_method
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
        lines.append(f"| {s['epoch']} | {_f(s['expected_loss'], 4)} | {_f(s['expected_error'], 4)} | "
                     f"{_f(s['grad_norm'], 4)} |")
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
              f"{_f(t.get('exact_gradients_s', math.nan) * 1000, 2)} ms (median).",
              f"- Wall time: training {_f(t.get('training_s', math.nan), 1)} s, estimators "
              f"{_f(t.get('estimators_s', math.nan), 1)} s, sweeps {_f(t.get('sweeps_s', 0.0), 1)} s, total "
              f"{_f(t.get('total_s', math.nan), 1)} s.", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
