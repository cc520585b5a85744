"""The training report (stbin.training.report): its tables render with their headers, the
curves are PNGs drawn without pyplot, and plots=False writes the text alone."""

from __future__ import annotations

import re

import pytest
from torch import nn

from stbin.training.config import build_config
from stbin.training.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_results(epochs: int = 3) -> dict:
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 50.0 + e, "val_loss": 1.1 / e,
                "val_accuracy": 49.0 + e, "lr|factor": 0.1, "note": "a|b"} for e in range(1, epochs + 1)]
    return {"history": history, "test": {"mode": 91.234, "ensemble": 92.5}, "time_s": 3.2, "data_time_s": 0.4,
            "checkpoint": "ckpt.pt"}


def model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def test_report_tables_and_curves(tmp_path, markdown_tables):
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path}"', "eval.ensemble=2"])
    path = write_report(tmp_path, cfg, "mlp", {"hidden": 8}, model(), (1, 2, 2), fake_results(), plots=True)
    text = path.read_text()
    tables = markdown_tables(text)
    heads = [head for head, _ in tables]
    assert ["evaluation", "accuracy"] in heads
    per_epoch = next(body for head, body in tables if head[0] == "epoch")
    assert len(per_epoch) == 3 and per_epoch[0][-1] == "a|b"  # a pipe in a cell stays in its cell
    assert any("lr|factor" in head for head in heads)
    acc = dict(next(body for head, body in tables if head == ["evaluation", "accuracy"]))
    assert acc["2-sample ensemble (averaged softmax)"] == "92.50%"
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert {"loss.png", "accuracy.png"} <= {p.name for p in tmp_path.iterdir()}


def test_text_alone_when_asked(tmp_path, markdown_tables):
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path}"'])
    text = write_report(tmp_path, cfg, "mlp", {}, model(), (1, 2, 2), fake_results(), plots=False).read_text()
    markdown_tables(text)
    assert "![" not in text and not list(tmp_path.glob("*.png"))


def test_plots_requested_without_matplotlib_is_one_clear_error(tmp_path, monkeypatch):
    import stbin.reporting.figures as figures

    monkeypatch.setattr(figures, "matplotlib_available", lambda: False)
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path}"'])
    with pytest.raises(ValueError, match=r"pip install 'stbin\[reports\]'"):
        write_report(tmp_path, cfg, "mlp", {}, model(), (1, 2, 2), fake_results(), plots=True)
    assert not (tmp_path / "report.md").exists()
