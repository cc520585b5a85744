"""The Markdown report at the end of ``stbin train``: results, loss/accuracy plots, per-epoch
metrics, the model summary (parameters, memory and MACs by precision) and the config.

Tables, figures and the file itself go through :mod:`stbin.reporting` (escaped tables,
matplotlib's object API, atomic writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from stbin.reporting import (
    matplotlib_available,
    new_figure,
    plural,
    require_matplotlib,
    save_figure,
    series_style,
    table,
    write_text,
)
from stbin.training.config import Config, dumps_toml
from stbin.training.summary import format_summary, model_summary

#: How each test-time evaluation mode is described in the report.
_EVAL_LABELS = {"mode": "deterministic (mode: sign of pre-activations and latent weights)",
                "mean": "mean-field (expectations propagated)",
                "sample": "one sampled network"}


def _curves(out: Path, history: list[dict[str, Any]]) -> list[str]:
    """Draw ``loss.png`` and ``accuracy.png`` (train and evaluation split) into ``out``."""
    from matplotlib.ticker import MaxNLocator

    if not history:
        return []
    ep = [r["epoch"] for r in history]
    files = []
    eval_key = next((k for k in history[0] if k.endswith("_accuracy") and k != "train_accuracy"), None)
    for fname, keys, ylabel in (("loss.png", ["train_loss", eval_key.replace("accuracy", "loss") if eval_key else None],
                                 "cross-entropy"),
                                ("accuracy.png", ["train_accuracy", eval_key], "accuracy (%)")):
        fig, ax = new_figure(figsize=(5, 3.2), dpi=100)
        for i, k in enumerate(keys):
            if k and k in history[0]:
                split, _, what = k.partition("_")
                label = f"{split} {what} ({'sampled network' if split == 'train' else 'mode'})"
                ax.plot(ep, [r[k] for r in history], label=label, **series_style(i))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out / fname)
        files.append(fname)
    return files


def write_report(out_dir: str | Path, cfg: Config, model_name: str, model_kwargs: dict[str, Any],
                 model: nn.Module, input_shape: tuple[int, ...], results: dict[str, Any],
                 plots: bool | None = None) -> Path:
    """Write ``report.md`` (and ``loss.png`` / ``accuracy.png``) into ``out_dir``; returns its path.

    Args:
        plots: draw the curves (needs matplotlib: :func:`stbin.reporting.require_matplotlib`
            raises otherwise), ``False`` for the text alone; ``None`` draws them when
            matplotlib is installed (for callers that have not checked up front).
    """
    out = Path(out_dir)
    if plots is None:
        plots = matplotlib_available()
    elif plots:
        require_matplotlib("the curves of the training report")
    history = results.get("history", [])
    curves = _curves(out, history) if plots else []
    test = results.get("test", {})
    lines = [f"# stbin training report: {cfg.preset or 'custom configuration'}", "",
             f"Model `{model_name}` on `{cfg.data.name}`, {plural(len(history), 'epoch')}, batch {cfg.train.batch_size}, "
             f"optimizer {cfg.optim.name} (lr {cfg.optim.lr:g}, latent gradient `{cfg.optim.latent}`), "
             f"schedule {cfg.schedule.name}.", "", "## Test accuracy", ""]
    labels = dict(_EVAL_LABELS, ensemble=f"{cfg.eval.ensemble}-sample ensemble (averaged softmax)")
    lines.append(table(["evaluation", "accuracy"], [[labels.get(k, k), f"{v:.2f}%"] for k, v in test.items()],
                       align="lr"))
    if "time_s" in results:
        lines += ["", f"Total time {results['time_s']:.1f} s (data loading {results.get('data_time_s', 0):.1f} s)."]
    if curves:
        lines += ["", "## Curves", ""] + [f"![{p[:-4]}]({p})" for p in curves]
    if history:
        keys = list(history[0])
        lines += ["", "## Per epoch", "",
                  table(keys, [[f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys]
                               for r in history])]
    lines += ["", "## Model summary", "", format_summary(model_summary(model, input_shape)), "",
              "Binary parameters are the latent weights of binary layers, deployed as ±1 (1 bit each).", "",
              "## Configuration", "", "```toml", dumps_toml(cfg.to_dict()).rstrip(), "```", "",
              f"Model arguments: `{model_kwargs}`", "",
              f"Checkpoint: `{results.get('checkpoint')}` (load with `stbin.training.load_model`). "
              "Metrics: `metrics.jsonl`, `metrics.csv`.", ""]
    return write_text(out / "report.md", "\n".join(lines))
