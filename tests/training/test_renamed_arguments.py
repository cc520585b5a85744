"""Checkpoints written before a model argument was renamed (``weight_scale`` -> ``weight_noise_scale``):
they resume under a configuration that uses the new names, load, summarise, export and initialise
other runs; a checkpoint of really other arguments is refused naming every differing key."""

import warnings

import pytest
import torch

from stbin.recipes.execution import canonical_config
from stbin.training import load_checkpoint, load_model, save_checkpoint
from stbin.training.checkpoint import CheckpointError
from stbin.training.config import build_config
from stbin.training.trainer import checkpoint_path, latest_checkpoint, train

SMALL = ["data.options={n_train=64, n_test=32}", "train.batch_size=32", "eval.ensemble=0", "model.hidden=[16, 16]",
         "model.weight_noise_scale=0.5"]


def quiet(_):
    pass


def cfg_for(out, *extra):
    return build_config("tiny", overrides=[f'out_dir="{out}"', *SMALL, *extra])


def _as_before_the_rename(path):
    """Rewrite a checkpoint as stbin wrote it before the rename: ``weight_scale`` in the model's
    arguments and in the configuration's ``[model]`` (with a valid digest, as a real old file)."""
    ck = load_checkpoint(path)
    for model in (ck["model"]["kwargs"], ck["config"]["model"]):
        model["weight_scale"] = model.pop("weight_noise_scale")
    save_checkpoint(path, ck)
    return ck


@pytest.fixture
def old_run(tmp_path):
    """A run of 2 epochs, as killed during epoch 2 by a stbin of before the rename; the state of the
    straight run after epoch 2 is kept in ``straight.pt``."""
    out = tmp_path / "old"
    train(cfg_for(out, "train.epochs=2"), log=quiet)
    checkpoint_path(out, 2).rename(tmp_path / "straight.pt")
    ck = _as_before_the_rename(checkpoint_path(out, 1))
    assert "weight_scale" in ck["model"]["kwargs"] and "weight_noise_scale" not in ck["model"]["kwargs"]
    return out


def test_a_checkpoint_with_the_old_name_resumes_under_the_new_name(old_run):
    train(cfg_for(old_run, "train.epochs=2"), resume=latest_checkpoint(old_run), log=quiet)
    a = load_checkpoint(checkpoint_path(old_run, 2))["model_state"]
    b = load_checkpoint(old_run.parent / "straight.pt")["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same run, resumed


def test_the_public_api_resumes_it_from_its_folder(old_run):
    import stbin

    r = stbin.train(None, overrides=["train.epochs=2"], resume=old_run, log=None)
    assert r.metrics["epoch"] == 2


def test_other_arguments_are_refused_naming_each_key_and_both_values(old_run):
    with pytest.raises(CheckpointError) as e:
        train(cfg_for(old_run, "train.epochs=2", "model.weight_noise_scale=0.25", "model.hidden=[8, 16]"),
              resume=latest_checkpoint(old_run), log=quiet)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in ("hidden: [16, 16] in the checkpoint, [8, 16] in this configuration",
                   "weight_noise_scale: 0.5 in the checkpoint, 0.25 in this configuration"):
        assert needle in msg, msg
    assert "scale: " not in msg.replace("weight_noise_scale: ", "")  # only the differing keys


def test_a_key_missing_on_one_side_is_named(old_run):
    with pytest.raises(CheckpointError, match=r"channel_scale: \(not set\) in the checkpoint, 'mean_abs' in this"):
        train(cfg_for(old_run, "train.epochs=2", 'model.channel_scale="mean_abs"'),
              resume=latest_checkpoint(old_run), log=quiet)


def test_another_model_is_refused_naming_both(old_run):
    with pytest.raises(CheckpointError, match="the checkpoint holds model 'mlp', this configuration 'lenet5'"):
        train(cfg_for(old_run, "train.epochs=2", 'model.name="lenet5"', 'data.options={n_train=64, n_test=32, '
                      'image_size=28}'), resume=latest_checkpoint(old_run), log=quiet)


def test_loading_it_uses_the_new_name_without_a_warning(old_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for a file the user cannot change
        model = load_model(checkpoint_path(old_run, 1))
    scales = {m.weight_noise_scale for m in model.modules() if hasattr(m, "weight_noise_scale")}
    assert scales == {0.5}


def test_it_initialises_another_run(old_run):
    r = train(cfg_for(old_run.parent / "new", "train.epochs=1", f'init_from="{old_run}"'), log=quiet)
    assert r["history"]


def test_summary_and_export_of_it(old_run, tmp_path, capsys):
    from stbin.cli.main import main  # the commands' entry point

    ck = checkpoint_path(old_run, 1)
    assert main(["summary", "--checkpoint", str(ck)]) == 0
    assert "mlp" in capsys.readouterr().out
    pytest.importorskip("numba")
    assert main(["export", str(ck), str(tmp_path / "net.stbn"), "--verify", "--verify-samples", "50"]) == 0
    assert "50/50 predictions identical" in capsys.readouterr().out


@pytest.mark.parametrize("old, new, same", [
    ({"weight_scale": 0.1}, {"weight_noise_scale": 0.1}, True),
    ({"weight_scale": 0.1}, {"weight_noise_scale": 0.2}, False),
    ({"hidden": [16]}, {"hidden": [16], "batch_norm": True}, True),    # a builder default, given or not
    ({"hidden": [16]}, {"hidden": [16], "batch_norm": False}, False),
    ({"hidden": (512, 512, 512)}, {}, True),                             # a tuple default, given as a list
])
def test_canonical_arguments(old, new, same):
    from stbin.models import canonical_model_kwargs

    assert (canonical_model_kwargs("mlp", old) == canonical_model_kwargs("mlp", new)) is same
    a, b = ({"model": {"name": "mlp", **d}} for d in (old, new))
    assert (canonical_config(a) == canonical_config(b)) is same  # recipes reuse runs by the same rule


def test_canonical_arguments_keep_model_defaults_of_the_quantization():
    from stbin.models import canonical_model_kwargs

    # bireal_resnet18's own quantization defaults (activation "sign") differ from QuantSpec's: a
    # quantization key is never dropped as "default", so this stays a difference
    assert canonical_model_kwargs("bireal_resnet18", {}) != canonical_model_kwargs(
        "bireal_resnet18", {"activation": "stochastic"})


def test_canonical_arguments_refuse_a_disagreeing_alias():
    from stbin.models import canonical_model_kwargs

    with pytest.raises(ValueError, match="weight_scale=0.1 is its deprecated alias and disagrees"):
        canonical_model_kwargs("mlp", {"weight_scale": 0.1, "weight_noise_scale": 0.2})


def test_plugin_arguments_are_left_as_they_are():
    from stbin.models import canonical_model_kwargs

    kw = {"weight_scale": 3, "hidden": 4}
    assert canonical_model_kwargs("somepkg.mod:factory", kw) == kw
