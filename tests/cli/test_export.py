"""``stbin export``: the real command on a tiny checkpoint; bad inputs are one-line errors (exit 2)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from stbin.training import save_checkpoint


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stbin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_inproc(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same command in this process (fast; the dispatcher and its error handling are identical)."""
    from stbin.cli.main import main

    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def assert_user_error(r: subprocess.CompletedProcess, message: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("stbin export: error:") and message in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from stbin.models import build_model

    torch.manual_seed(0)
    kwargs = {"in_features": 30, "hidden": [70, 65], "num_classes": 4}
    model = build_model("sbn_mlp", **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 2)
                m.weight.normal_()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"model": {"name": "sbn_mlp", "kwargs": kwargs}, "model_state": model.state_dict()})
    return path


def test_export_verify_and_load(tiny_ckpt, tmp_path):
    out = tmp_path / "tiny.stbn"
    r = run_cli("export", str(tiny_ckpt), str(out), "--verify", "--verify-samples", "300")
    assert r.returncode == 0, r.stderr
    assert "format version 1" in r.stdout and "bdense" in r.stdout
    assert "binary weights: 18200 B as float32 -> 1040 B packed (17.5x smaller)" in r.stdout
    assert "verify on 300 random N(0, 1) inputs: 300/300 predictions identical" in r.stdout

    from stbin.deploy import load
    from stbin.nn import eval_mode
    from stbin.training import load_model

    net = load(out)
    assert net.meta["model"]["name"] == "sbn_mlp" and net.meta["input_shape"] == [30]
    model = load_model(tiny_ckpt)
    x = torch.randn(50, 30)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).argmax(-1).numpy()
    np.testing.assert_array_equal(net(x).argmax(-1), ref)


def test_export_errors(tiny_ckpt, tmp_path, capsys):
    assert_user_error(run_cli("export", str(tmp_path / "missing.pt"), str(tmp_path / "o.stbn")), "no checkpoint")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert_user_error(run_inproc(capsys, "export", str(bad), str(tmp_path / "o.stbn")),
                      "not a readable stbin checkpoint")
    assert_user_error(run_inproc(capsys, "export", str(tiny_ckpt), str(tmp_path)), "is a directory")
    assert_user_error(run_inproc(capsys, "export", str(tiny_ckpt), str(tmp_path / "o.stbn"), "--input-shape", "1,x"),
                      "--input-shape must be integers")


def test_export_refuses_unsupported_model(tmp_path, capsys):
    from stbin.models import build_model

    kwargs = {"hidden": [8], "activation": "relu"}
    model = build_model("mlp", **kwargs)
    path = tmp_path / "relu.pt"
    save_checkpoint(path, {"model": {"name": "mlp", "kwargs": kwargs}, "model_state": model.state_dict()})
    assert_user_error(run_inproc(capsys, "export", str(path), str(tmp_path / "o.stbn")), "cannot export module ReLU")
