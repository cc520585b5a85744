"""The training state a resumed run restores: a checkpoint that passes its digest (a file written
by hand or by another program) but holds a state of the wrong layout, of the wrong shapes or with
non-finite values is refused before any work, in one CheckpointError naming the file and the part
(before: KeyError / AttributeError / RuntimeError tracebacks, some of them after an epoch of work)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from stbin.training.checkpoint import CheckpointError, checkpoint_path, payload_digest
from stbin.training.config import build_config, from_dict
from stbin.training.resume_state import check_training_state
from stbin.training.trainer import latest_checkpoint, train

SMALL = ["data.options={n_train=96, n_test=64}", "train.batch_size=32", "eval.ensemble=0"]


def quiet(_):
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 1-epoch tiny run; returns (its config overrides, its checkpoint)."""
    out = tmp_path_factory.mktemp("resume") / "run"
    overrides = [f'out_dir="{out}"', *SMALL]
    train(build_config("tiny", overrides=[*overrides, "train.epochs=1"]), log=quiet)
    return overrides, latest_checkpoint(out)


def _set(path, value):
    def change(ck):
        holder = ck
        for k in path[:-1]:
            holder = holder[k]
        holder[path[-1]] = value
    return change


def _first_moment(ck):
    st = ck["optimizer_state"]["state"]
    first = st[sorted(st)[0]]
    return first, next(k for k, v in first.items() if isinstance(v, torch.Tensor) and v.dim() > 0)


def _moment_shape(ck):
    first, name = _first_moment(ck)
    first[name] = torch.zeros(3, 3)


def _moment_nan(ck):
    first, name = _first_moment(ck)
    first[name] = torch.full_like(first[name], float("nan"))


def _weight_nan(ck):
    k = next(k for k, v in ck["model_state"].items() if v.is_floating_point())
    ck["model_state"][k] = torch.full_like(ck["model_state"][k], float("inf"))


CASES = [
    ("epoch string", _set(["epoch"], "five"), "epoch must be an integer >= 0, got 'five'"),
    ("epoch negative", _set(["epoch"], -3), "epoch must be an integer >= 0, got -3"),
    ("epoch bool", _set(["epoch"], True), "epoch must be an integer >= 0, got True"),
    ("step", _set(["step"], 1.5), "step must be an integer >= 0, got 1.5"),
    ("optimizer None", _set(["optimizer_state"], None), "optimizer_state must be an optimizer state dict"),
    ("optimizer foreign", _set(["optimizer_state"], {"foo": 1}), "optimizer_state must be an optimizer state"),
    ("optimizer groups", _set(["optimizer_state", "param_groups"], []), "its optimizer_state does not fit"),
    ("moment shape", _moment_shape, r"optimizer_state holds \w+ of shape \(3, 3\)"),
    ("moment nan", _moment_nan, "optimizer_state holds non-finite values"),
    ("scheduler", _set(["scheduler_state"], "x"), "scheduler_state must be a learning-rate scheduler state"),
    ("no scheduler", lambda ck: ck.pop("scheduler_state"), "has no scheduler_state"),
    ("rng None", _set(["rng_state"], None), "rng_state must be a dict of generator states"),
    ("rng float", _set(["rng_state", "torch"], torch.zeros(3)), "rng_state must be a dict of generator states"),
    ("rng short", _set(["rng_state", "torch"], torch.zeros(3, dtype=torch.uint8)), "its rng_state does not fit"),
    ("metrics", _set(["metrics"], "x"), "metrics must be a list of per-epoch records"),
    # a tensor in a record: before, json.dumps failed after the first resumed epoch
    ("metrics value", _set(["metrics"], [{"epoch": 1, "loss": torch.zeros(2)}]), "metrics must be a list of per-epoch"),
    ("weights shape", _set(["model_state", "1.weight"], torch.zeros(3, 3)), "its model_state does not fit"),
    ("weights missing", lambda ck: ck["model_state"].pop("1.weight"), "its model_state does not fit"),
    ("weights inf", _weight_nan, "model_state holds non-finite values"),
]


@pytest.mark.parametrize("label, change, message", CASES, ids=[c[0] for c in CASES])
def test_a_crafted_training_state_is_refused_before_any_work(run, tmp_path, label, change, message):
    overrides, ckpt = run
    bad = copy.deepcopy({k: v for k, v in ckpt.items() if k != "_path"})
    change(bad)
    bad["_path"] = "crafted.pt"
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path / "out"}"', *SMALL, "train.epochs=2"])
    with pytest.raises(CheckpointError, match=message) as e:
        train(cfg, resume=bad, log=quiet)
    assert "crafted.pt" in str(e.value)
    assert not checkpoint_path(tmp_path / "out", 2).exists()  # no epoch was trained


def test_the_trainer_writes_a_state_that_passes_the_check(run):
    check_training_state(run[1])


def test_the_cli_says_one_line_for_a_crafted_checkpoint(run, tmp_path):
    """A crafted file with a recomputed digest, through `stbin train --resume`: exit 2, no traceback."""
    _, ckpt = run
    bad = copy.deepcopy({k: v for k, v in ckpt.items() if k != "_path"})
    bad["optimizer_state"] = None
    bad["digest"] = payload_digest(bad)
    folder = tmp_path / "crafted"
    folder.mkdir()
    torch.save(bad, folder / "checkpoint-epoch0001.pt")
    r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "train", "--resume", str(folder), "--epochs", "2",
                        "--no-progress", "--no-plots"], capture_output=True, text=True, env={**os.environ},
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("stbin train: error: ") and "optimizer_state must be" in r.stderr


def test_a_checkpoint_config_whose_model_is_not_a_table_is_refused():
    with pytest.raises(ValueError, match=r"\[model\] must be a table, got \[1, 2\]"):
        from_dict({"model": [1, 2]})


def test_init_from_refuses_non_finite_weights(run, tmp_path):
    """Before: NaN weights were copied into the new run, which diverged after its first epoch."""
    from stbin.training.checkpoint import save_checkpoint

    _, ckpt = run
    state = dict(ckpt["model_state"])
    state["1.weight"] = torch.full_like(state["1.weight"], float("nan"))
    save_checkpoint(tmp_path / "src" / "checkpoint-epoch0001.pt", {"model": ckpt["model"], "model_state": state})
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path / "out"}"', *SMALL, "train.epochs=1",
                                          f'init_from="{tmp_path / "src"}"'])
    with pytest.raises(CheckpointError, match="model_state holds non-finite values"):
        train(cfg, log=quiet)
    assert not checkpoint_path(tmp_path / "out", 1).exists()
