"""``stbin export --verify`` on residual checkpoints (resnet20, bireal_resnet18): the real command."""

import subprocess
import sys

import pytest
import torch

from stbin.deploy import load
from stbin.models import build_model
from stbin.training import save_checkpoint


@pytest.mark.parametrize("name, kwargs", [("resnet20", {"width": 0.25, "blocks": 1}),
                                          ("bireal_resnet18", {"width": 0.0625, "convs": 1, "shortcut": "zero_pad"})])
def test_export_verify_residual_checkpoint(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 1)
                m.running_var.uniform_(0.5, 2)
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"model": {"name": name, "kwargs": kwargs}, "model_state": model.state_dict()})
    out = tmp_path / "m.stbn"
    r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "export", str(ckpt), str(out), "--input-shape",
                        "3,16,16", "--verify", "--verify-samples", "64"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "64/64 predictions identical" in r.stdout
    assert "bconv2d_res" in {op.type for op in load(out).ops}  # the residual blocks, fused
