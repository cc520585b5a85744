"""examples/binarize_your_model.py runs end to end (quick setting) and its exports agree with PyTorch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "binarize_your_model.py"


def test_example_runs_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("binarize_your_model", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "kept real  0: Conv2d (first weight layer in execution order)" in out
    assert res["stbn_identical"] == 1.0 and res["onnx_identical"] == 1.0
    assert (tmp_path / "model.stbn").is_file() and (tmp_path / "model.onnx").is_file()
    assert res["mode"] > 20.0  # well above chance (10%) after 20 fine-tuning steps on 2000 images
