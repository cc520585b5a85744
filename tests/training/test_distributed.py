"""DDP through torchrun: 2 CPU processes (gloo) compute what 1 process computes on the same global batch.

The model is deterministic and has no batch norm (sign units, sign weights, ``batch_norm=false``):
BatchNorm would normalise each process's half batch with its own statistics, and stochastic
units draw different noise per process. The remaining difference is float summation order.
"""

import subprocess
import sys

import pytest
import torch

from stbin.training import load_checkpoint

ARGS = ["train", "--preset", "tiny", "--set", "model.batch_norm=false", "--set", 'model.activation="sign"',
        "--set", 'model.weights="sign"', "--set", "eval.ensemble=0", "--set", "data.options={n_train=128, n_test=64}",
        "--epochs", "2", "--no-progress"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")
def test_two_processes_match_one_process(tmp_path):
    one = subprocess.run([sys.executable, "-m", "stbin.cli.main", *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "stbin.cli.main", *ARGS, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("test accuracy:") == 1  # only rank 0 reports
    assert "2 processes" in two.stdout
    a = load_checkpoint(tmp_path / "one" / "checkpoint-epoch0002.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint-epoch0002.pt")
    assert a["step"] == b["step"] == 8
    for k, v in a["model_state"].items():
        assert torch.allclose(v, b["model_state"][k], atol=1e-5, rtol=1e-5), k
    ha, hb = a["metrics"][-1], b["metrics"][-1]
    assert abs(ha["train_loss"] - hb["train_loss"]) < 1e-4 and ha["test_accuracy"] == hb["test_accuracy"]
