"""The Markdown report at the end of ``stbin train``: results, loss/accuracy plots, per-epoch
metrics, the model summary (parameters, memory and MACs by precision) and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from stbin.training.config import Config, dumps_toml
from stbin.training.summary import format_summary, model_summary


def _plots(out: Path, history: list[dict[str, Any]]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover - matplotlib is an optional extra
        return []
    if not history:
        return []
    ep = [r["epoch"] for r in history]
    files = []
    eval_key = next((k for k in history[0] if k.endswith("_accuracy") and k != "train_accuracy"), None)
    for fname, keys, ylabel in (("loss.png", ["train_loss", eval_key.replace("accuracy", "loss") if eval_key else None],
                                 "cross-entropy"),
                                ("accuracy.png", ["train_accuracy", eval_key], "accuracy (%)")):
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for k in keys:
            if k and k in history[0]:
                split, _, what = k.partition("_")
                label = f"{split} {what} ({'sampled network' if split == 'train' else 'mode'})"
                ax.plot(ep, [r[k] for r in history], marker="o", label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        files.append(fname)
    return files


def write_report(out_dir: str | Path, cfg: Config, model_name: str, model_kwargs: dict[str, Any],
                 model: nn.Module, input_shape: tuple[int, ...], results: dict[str, Any]) -> Path:
    """Write ``report.md`` (and ``loss.png`` / ``accuracy.png``) into ``out_dir``; returns its path."""
    out = Path(out_dir)
    history = results.get("history", [])
    plots = _plots(out, history)
    test = results.get("test", {})
    lines = [f"# stbin training report: {cfg.preset or 'custom configuration'}", "",
             f"Model `{model_name}` on `{cfg.data.name}`, {len(history)} epochs, batch {cfg.train.batch_size}, "
             f"optimizer {cfg.optim.name} (lr {cfg.optim.lr:g}, latent gradient `{cfg.optim.latent}`), "
             f"schedule {cfg.schedule.name}.", "",
             "## Test accuracy", "", "| evaluation | accuracy |", "|---|--:|"]
    labels = {"mode": "deterministic (mode: sign of pre-activations and latent weights)",
              "mean": "mean-field (expectations propagated)",
              "sample": "one sampled network",
              "ensemble": f"{cfg.eval.ensemble}-sample ensemble (averaged softmax)"}
    for k, v in test.items():
        lines.append(f"| {labels.get(k, k)} | {v:.2f}% |")
    if "time_s" in results:
        lines += ["", f"Total time {results['time_s']:.1f} s (data loading {results.get('data_time_s', 0):.1f} s)."]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p[:-4]}]({p})" for p in plots]
    if history:
        keys = list(history[0])
        lines += ["", "## Per epoch", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in history:
            lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                         + " |")
    lines += ["", "## Model summary", "", format_summary(model_summary(model, input_shape)), "",
              "Binary parameters are the latent weights of binary layers, deployed as ±1 (1 bit each).", "",
              "## Configuration", "", "```toml", dumps_toml(cfg.to_dict()).rstrip(), "```", "",
              f"Model arguments: `{model_kwargs}`", "",
              f"Checkpoint: `{results.get('checkpoint')}` (load with `stbin.training.load_model`). "
              "Metrics: `metrics.jsonl`, `metrics.csv`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
