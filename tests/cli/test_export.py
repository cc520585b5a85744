"""``stbin export``: the real command on a tiny checkpoint; bad inputs are one-line errors (exit 2)."""

import numpy as np
import pytest
import torch

from stbin.training import save_checkpoint


def _mlp_checkpoint(tmp_path_factory, name: str, kwargs: dict, file: str):
    """A checkpoint of ``build_model(name, **kwargs)`` with seed 0 and randomised batch-norm statistics
    (so that the thresholds the export folds them into are not all zero)."""
    from stbin.models import build_model

    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 2)
                m.weight.normal_()
    path = tmp_path_factory.mktemp("ckpt") / file
    save_checkpoint(path, {"model": {"name": name, "kwargs": kwargs}, "model_state": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return _mlp_checkpoint(tmp_path_factory, "sbn_mlp", {"in_features": 30, "hidden": [70, 65], "num_classes": 4},
                           "tiny.pt")


def test_export_verify_refuses_a_bad_inline_integers_setting_before_writing(tiny_ckpt, tmp_path, run_cli,
                                                                            assert_user_error):
    out = tmp_path / "tiny.stbn"
    r = run_cli("export", str(tiny_ckpt), str(out), "--verify", env={"STBIN_INLINE_INTEGERS": "yes"})
    assert_user_error(r, "STBIN_INLINE_INTEGERS", "got 'yes'")
    assert not out.exists() and r.stdout == ""


def test_export_verify_and_load(tiny_ckpt, tmp_path, run_cli):
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


def test_export_errors(tiny_ckpt, tmp_path, run_cli, assert_user_error):
    assert_user_error(run_cli("export", str(tmp_path / "missing.pt"), str(tmp_path / "o.stbn")), "no checkpoint")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert_user_error(run_cli("export", str(bad), str(tmp_path / "o.stbn"), inprocess=True),
                      "not a readable stbin checkpoint")
    assert_user_error(run_cli("export", str(tiny_ckpt), str(tmp_path), inprocess=True), "is a directory")
    assert_user_error(run_cli("export", str(tiny_ckpt), str(tmp_path / "o.stbn"), "--input-shape", "1,x", inprocess=True),
                      "--input-shape must be integers")


def test_export_refuses_unsupported_model(tmp_path, run_cli, assert_user_error):
    from stbin.models import build_model

    kwargs = {"hidden": [8], "activation": "relu"}
    model = build_model("mlp", **kwargs)
    path = tmp_path / "relu.pt"
    save_checkpoint(path, {"model": {"name": "mlp", "kwargs": kwargs}, "model_state": model.state_dict()})
    assert_user_error(run_cli("export", str(path), str(tmp_path / "o.stbn"), inprocess=True), "cannot export module ReLU")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_export_and_summary_refuse_non_finite_weights_before_writing(tiny_ckpt, tmp_path, run_cli, assert_user_error,
                                                                     value):
    """Before: a checkpoint with a NaN / inf weight (damaged or crafted, digest recomputed) was exported as a
    model that silently predicts garbage."""
    from stbin.training import load_checkpoint

    ck = load_checkpoint(tiny_ckpt)
    state = dict(ck["model_state"])
    state["1.weight"] = state["1.weight"].clone()
    state["1.weight"][0, 0] = value
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"model": ck["model"], "model_state": state})
    out = tmp_path / "o.stbn"
    assert_user_error(run_cli("export", str(bad), str(out), inprocess=True),
                      "model_state holds non-finite values (NaN or inf) in 1.weight")
    assert not out.exists()
    assert_user_error(run_cli("summary", "--checkpoint", str(bad), inprocess=True), "non-finite values")


def test_a_checkpoint_whose_weights_do_not_fit_names_the_tensor(tiny_ckpt, tmp_path, run_cli, assert_user_error):
    """Before: the message stopped at torch's first line, 'Error(s) in loading state_dict for Sequential:'."""
    from stbin.training import load_checkpoint

    ck = load_checkpoint(tiny_ckpt)
    state = dict(ck["model_state"])
    state["1.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"model": ck["model"], "model_state": state})
    r = run_cli("export", str(bad), str(tmp_path / "o.stbn"), inprocess=True)
    assert_user_error(r, "size mismatch for 1.weight")


@pytest.fixture(scope="module")
def binary_first_ckpt(tmp_path_factory):
    """An MLP whose first layer has binary weights (the bit-serial path on a declared 8-bit grid)."""
    kwargs = {"in_features": 40, "hidden": [48, 32], "num_classes": 4, "activation": "sign", "weights": "sign",
              "binary_first": True}
    return _mlp_checkpoint(tmp_path_factory, "mlp", kwargs, "bfirst.pt")


def test_export_input_grid_runs_the_first_layer_bit_serially(binary_first_ckpt, tmp_path, run_cli):
    """--input-grid MEAN,STD is stored in the file, --verify feeds 8-bit inputs on that grid, and the
    loaded network refuses an input off the grid."""
    out = tmp_path / "g.stbn"
    r = run_cli("export", str(binary_first_ckpt), str(out), "--input-grid", "0.1307,0.3081", "--verify",
                "--verify-samples", "300")
    assert r.returncode == 0, r.stderr
    assert "verify on 300 random 8-bit inputs on the declared grid: 300/300 predictions identical" in r.stdout
    from stbin.deploy import load
    from stbin.deploy.input_grid import input_grid_for

    net = load(out)
    assert net.meta["input_grid"] == input_grid_for(0.1307, 0.3081)
    assert [o.type for o in net.ops][:2] == ["blinear", "sign"]
    q = torch.randint(0, 256, (5, 40), generator=torch.Generator().manual_seed(3))
    x = ((q.float() / 255 - 0.1307) / 0.3081).numpy()
    assert net(x).shape == (5, 4)
    with pytest.raises(ValueError, match="grid"):
        net(x + 0.5 * net.meta["input_grid"]["scale"])  # half a grid step off


@pytest.mark.parametrize("value,msg", [
    ("0.1307", "--input-grid must be MEAN,STD"),
    ("0.1,0.2,0.3", "--input-grid must be MEAN,STD"),
    ("a,b", "--input-grid must be MEAN,STD"),
    ("0.1,0", "--input-grid needs a finite MEAN and a finite STD > 0"),
    ("nan,0.3", "--input-grid needs a finite MEAN and a finite STD > 0"),
    ("0.1,-1", "--input-grid needs a finite MEAN and a finite STD > 0"),
])
def test_export_bad_input_grid(binary_first_ckpt, tmp_path, run_cli, assert_user_error, value, msg):
    out = tmp_path / "g.stbn"
    assert_user_error(run_cli("export", str(binary_first_ckpt), str(out), "--input-grid", value, inprocess=True), msg)
    assert not out.exists()


def test_export_input_grid_is_refused_for_onnx(binary_first_ckpt, tmp_path, run_cli, assert_user_error):
    assert_user_error(run_cli("export", str(binary_first_ckpt), str(tmp_path / "g.onnx"), "--format", "onnx",
                              "--input-grid", "0.1307,0.3081", inprocess=True), "--input-grid applies to the .stbn")
