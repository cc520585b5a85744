"""``stbin summary``: per-layer table from a model name, a preset or a checkpoint."""

import pytest


def test_summary_of_a_model_and_a_preset(run_cli):
    r = run_cli("summary", "--model", "mlp", "--set", "hidden=[32,32]")
    assert r.returncode == 0, r.stderr
    assert "| **total** |" in r.stdout and "BinaryLinear" in r.stdout and "compression" in r.stdout
    r = run_cli("summary", "--preset", "sbn_conv_cifar10", "--set", "width=0.125")
    assert r.returncode == 0, r.stderr
    assert "3x32x32" in r.stdout and "BinaryConv2d" in r.stdout


def test_summary_of_a_checkpoint(tmp_path, run_cli):
    from stbin.models import build_model
    from stbin.training import save_checkpoint

    m = build_model("lenet5", width=0.5)
    p = save_checkpoint(tmp_path / "c.pt", {"model": {"name": "lenet5", "kwargs": {"width": 0.5}},
                                            "model_state": m.state_dict()})
    r = run_cli("summary", "--checkpoint", str(p))
    assert r.returncode == 0, r.stderr
    assert "lenet5 on 1x28x28" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "lenett"], "did you mean 'lenet5'"),
    (["--model", "mlp", "--set", "hiden=3"], "did you mean 'hidden'"),
    (["--model", "mlp", "--preset", "tiny"], "exactly one of"),
    (["--model", "mlp", "--input-shape", "a,b"], "--input-shape"),
])
def test_summary_user_errors(args, message, run_cli, assert_user_error):
    assert_user_error(run_cli("summary", *args), message)


def test_an_old_checkpoint_without_digest_is_summarised_with_one_warning_line(tmp_path, run_cli):
    import torch

    from stbin.models import build_model

    m = build_model("mlp", hidden=[8])
    torch.save({"format": "stbin-checkpoint", "version": 1, "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
                "model_state": m.state_dict()}, tmp_path / "v1.pt")
    r = run_cli("summary", "--checkpoint", str(tmp_path / "v1.pt"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [f"stbin summary: warning: {tmp_path / 'v1.pt'} is a version-1 checkpoint "
                                             "without digest: its content cannot be verified (re-save it to add one)"]


def _mlp_checkpoint(tmp_path, input_shape):
    """An mlp checkpoint whose recorded input shape is ``input_shape`` (as a crafted file may say)."""
    from stbin.models import build_model
    from stbin.training import save_checkpoint

    kw = {"in_features": 64, "hidden": [16], "num_classes": 3}
    m = build_model("mlp", **kw)
    return save_checkpoint(tmp_path / "c.pt", {"model": {"name": "mlp", "kwargs": kw, "input_shape": input_shape},
                                                "model_state": m.state_dict()})


@pytest.mark.parametrize("recorded", [["a"], [-5, 8, 8], [0], [True, 8, 8], [100000, 100000, 100000]])
def test_a_bad_recorded_input_shape_is_one_line(tmp_path, run_cli, assert_user_error, recorded):
    """Before: int() ValueErrors, negative-dimension / allocation RuntimeError tracebacks."""
    p = _mlp_checkpoint(tmp_path, recorded)
    assert_user_error(run_cli("summary", "--checkpoint", str(p), inprocess=True),
                      "the recorded input shape must be positive integers")


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "1,9,9"], "--input-shape 1,9,9 does not fit the model"),          # was a RuntimeError traceback
    (["--input-shape", "100000,100000"], "at most 67108864 values"),                    # was an allocation traceback
])
def test_an_input_shape_that_does_not_fit_is_one_line(tmp_path, run_cli, assert_user_error, args, message):
    p = _mlp_checkpoint(tmp_path, [1, 8, 8])
    assert_user_error(run_cli("summary", "--checkpoint", str(p), *args, inprocess=True), message)

