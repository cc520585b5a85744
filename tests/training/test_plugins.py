"""Models and datasets by import path: train, resume, summary and export through the CLI; every
breach of the contracts is one line with exit code 2 naming the plugin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from stbin.cli.main import main
from stbin.training import load_checkpoint

M = "stbin_test_plugins"
SMALL = ["--epochs", "2", "--batch-size", "32", "--set", "eval.ensemble=0", "--no-progress", "--device", "cpu"]


def _cli(args, env_path=None, timeout=300):
    env = dict(os.environ)
    parts = [p for p in (str(env_path) if env_path else None, env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return subprocess.run([sys.executable, "-m", "stbin.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_plugin_run_trains_resumes_summarises_and_exports(plugin_dir, tmp_path):
    out = tmp_path / "run"
    r = _cli(["train", "--model", f"{M}:model", "--dataset", f"{M}:data", "--out", str(out), *SMALL], plugin_dir)
    assert r.returncode == 0, r.stderr
    ckpt = load_checkpoint(out / "checkpoint-epoch0002.pt")
    assert ckpt["model"]["name"] == f"{M}:model"
    assert tuple(ckpt["model"]["kwargs"]["input_shape"]) == (1, 4, 4) and ckpt["model"]["kwargs"]["num_classes"] == 3
    assert ckpt["config"]["data"]["name"] == f"{M}:data"
    assert "hidden" not in ckpt["model"]["kwargs"] and "activation" not in ckpt["model"]["kwargs"]
    # resume extends the run through the same factories
    r = _cli(["train", "--resume", str(out), "--epochs", "3", "--no-progress"], plugin_dir)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out / "checkpoint-epoch0003.pt")["step"] == 9
    r = _cli(["summary", "--checkpoint", str(out / "checkpoint-epoch0003.pt")], plugin_dir)
    assert r.returncode == 0, r.stderr
    assert "1x4x4" in r.stdout and "compression" in r.stdout
    r = _cli(["export", str(out / "checkpoint-epoch0003.pt"), str(tmp_path / "m.stbn"), "--verify"], plugin_dir)
    assert r.returncode == 0, r.stderr
    assert "identical" in r.stdout
    # not importable: one line saying what to make importable
    last = str(out / "checkpoint-epoch0003.pt")
    for args in (["summary", "--checkpoint", last], ["export", last, str(tmp_path / "n.stbn")],
                 ["train", "--resume", str(out), "--epochs", "4", "--no-progress"]):
        r = _cli(args)
        assert r.returncode == 2, (args, r.stderr)
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and f"{M}:" in err and "PYTHONPATH" in err, err


@pytest.mark.parametrize("flag,value,expected", [
    ("--model", f"{M}:not_a_module", "returned str, not a torch.nn.Module"),
    ("--model", f"{M}:model_raises", "raised RuntimeError: out of coffee"),
    ("--model", f"{M}:missing", "has no attribute 'missing'"),
    ("--model", f"{M}:NOT_CALLABLE", "not a callable"),
    ("--model", "stbin_no_such_module:f", "cannot import module 'stbin_no_such_module'"),
    ("--model", "stbin_test_broken:f", "importing 'stbin_test_broken' failed: ImportError: this module needs"),
    ("--model", "bad path:f", "not an import path"),
    ("--dataset", f"{M}:data_not_tuple", "expected a tuple (train, test, num_classes)"),
    ("--dataset", f"{M}:data_not_dataset", "the train split is a list, not a torch.utils.data.Dataset"),
    ("--dataset", f"{M}:data_bad_classes", "num_classes must be an integer >= 2"),
    ("--dataset", f"{M}:data_int_images", "expected a floating-point tensor C x H x W"),
    ("--dataset", f"{M}:data_bad_label_later", "the label is 7; expected an int in [0, 3)"),
    ("--dataset", f"{M}:data_raises", "raised FileNotFoundError: no such folder /nowhere"),
    ("--dataset", f"{M}:nothing", "has no attribute 'nothing'"),
])
def test_broken_plugins_are_one_line_errors(plugin_dir, tmp_path, capsys, flag, value, expected):
    other = ["--dataset", f"{M}:data"] if flag == "--model" else ["--model", f"{M}:Zoo.small"]
    code = main(["train", flag, value, *other, "--out", str(tmp_path / "run"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and expected in err and value in err, err


def test_wrong_labels_are_reported_from_worker_processes(plugin_dir, tmp_path, capsys):
    code = main(["train", "--model", f"{M}:Zoo.small", "--dataset", f"{M}:data_bad_label_later",
                 "--set", "data.workers=2", "--out", str(tmp_path / "run"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "the label is 7" in err, err


def test_numpy_labels_and_float64_images_are_accepted(plugin_dir, tmp_path):
    import stbin

    r = stbin.train({"preset": "tiny", "out_dir": str(tmp_path / "n"), "device": "cpu",
                     "data": {"name": f"{M}:data_numpy", "options": {}}, "model": {"name": f"{M}:Zoo.small"},
                     "train": {"epochs": 1, "batch_size": 16}, "eval": {"ensemble": 0}}, log=None)
    assert r.metrics["step"] == 4 and 0 <= r.test["mode"] <= 100


def test_model_options_reach_the_factory_and_derived_keys_are_refused(plugin_dir, tmp_path, capsys):
    import stbin

    r = stbin.train({"preset": "tiny", "out_dir": str(tmp_path / "a"), "device": "cpu",
                     "data": {"name": f"{M}:data", "options": {"n_train": 64, "n_test": 32}},
                     "model": {"name": f"{M}:model", "hidden": 8}, "train": {"epochs": 1}, "eval": {"ensemble": 0}},
                    log=None)
    assert r.model[1].out_features == 8
    with pytest.raises(ValueError, match="model.num_classes is filled in from the data"):
        stbin.train({"preset": "tiny", "out_dir": str(tmp_path / "b"), "data": {"name": f"{M}:data"},
                     "model": {"name": f"{M}:model", "num_classes": 3}}, log=None)


def _crafted(tmp_path, name, kwargs):
    """A checkpoint file with a valid digest whose model is ``name`` built with ``kwargs`` (as anyone can write)."""
    from stbin.training.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    return save_checkpoint(tmp_path / "crafted.pt", {"model": {"name": name, "kwargs": kwargs},
                                                     "model_state": model.state_dict()})


@pytest.mark.parametrize("name, kwargs, message", [
    ("subprocess:run", {"args": "touch {marker}", "shell": True}, "module 'subprocess' is part of Python's standard library"),
    ("os:system", {"command": "touch {marker}"}, "module 'os' is part of Python's standard library"),
    (f"{M}:run_command", {"args": "touch {marker}", "shell": True}, "module 'subprocess' is part of Python's standard"),
    (f"{M}:untyped", {"a": 1}, "does not declare the parameter(s) input_shape, num_classes of a model factory"),
])
def test_a_crafted_checkpoint_never_calls_a_function_that_is_not_a_model_factory(plugin_dir, tmp_path, name, kwargs,
                                                                                 message):
    """Before: `stbin summary --checkpoint` / `stbin export` called any importable function named by the file,
    with the file's arguments (subprocess:run with shell=True ran a shell command)."""
    marker = tmp_path / "ran"
    path = _crafted(tmp_path, name, {k: v.format(marker=marker) if isinstance(v, str) else v
                                     for k, v in kwargs.items()})
    for args in (["summary", "--checkpoint", str(path)], ["export", str(path), str(tmp_path / "x.stbn")]):
        r = _cli(args, plugin_dir)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
        assert not marker.exists(), "the crafted checkpoint ran a command"


def test_a_dataset_factory_must_declare_root(plugin_dir, tmp_path):
    import stbin_test_plugins as plugins

    from stbin.plugins import PluginError, load_dataset_plugin

    with pytest.raises(PluginError, match=r"does not declare the parameter\(s\) root of a dataset factory"):
        load_dataset_plugin(f"{M}:data_untyped", root=None)
    with pytest.raises(PluginError, match="standard library"):
        load_dataset_plugin("subprocess:run", root=None, args="true")
    assert "data_untyped" not in plugins.SEEN  # refused before it was called
