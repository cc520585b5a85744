"""The public API ``stbin.train``: Config / dict / TOML inputs, the result object, validation,
resume, deterministic algorithms, streamed datasets (bit-exact resume, worker-independent order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import stbin
from stbin.training import load_checkpoint
from stbin.training.api import OPTION_KEYS
from stbin.training.trainer import checkpoint_path

M = "stbin_test_plugins"


def tiny(out, **over):
    d = {"preset": "tiny", "out_dir": str(out), "device": "cpu",
         "data": {"options": {"n_train": 96, "n_test": 64}}, "train": {"epochs": 2, "batch_size": 32},
         "eval": {"ensemble": 2}}
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


def test_dict_config_and_result(tmp_path):
    r = stbin.train(tiny(tmp_path / "run"), log=None)
    assert isinstance(r, stbin.TrainResult)
    assert r.out_dir == tmp_path / "run" and r.checkpoint == checkpoint_path(tmp_path / "run", 2)
    assert r.report is not None and r.report.is_file()
    assert set(r.test) == {"mode", "mean", "ensemble"} and all(0 <= v <= 100 for v in r.test.values())
    assert r.metrics["epoch"] == 2 and [h["epoch"] for h in r.history] == [1, 2]
    assert isinstance(r.model, torch.nn.Module) and not r.model.training
    ckpt = load_checkpoint(r.checkpoint)  # the returned model is the trained one
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, ckpt["model_state"][k]), k


def test_config_object(tmp_path):
    cfg = stbin.Config(seed=3, device="cpu", out_dir=str(tmp_path / "a"),
                       data=stbin.DataConfig(name="synthetic", options={"n_train": 64, "n_test": 32}),
                       model={"name": "mlp", "hidden": [16]}, train=stbin.TrainConfig(epochs=1, batch_size=32),
                       eval=stbin.EvalConfig(ensemble=0))
    r = stbin.train(cfg, log=None)
    assert r.config.to_dict() == cfg.to_dict()  # nothing added, and the caller's object is not changed
    assert r.model[1].out_features == 16 and r.metrics["epoch"] == 1
    cfg.train.epochs = 0
    with pytest.raises(ValueError, match="train.epochs must be an integer >= 1"):
        stbin.train(cfg, log=None)


def test_dict_and_toml_path_give_the_same_run(tmp_path):
    a = stbin.train(tiny(tmp_path / "a", train={"epochs": 1}), overrides=["optim.lr=0.001"], log=None)
    toml = tmp_path / "run.toml"
    toml.write_text(f'preset = "tiny"\ndevice = "cpu"\nout_dir = "{tmp_path / "b"}"\n[data]\n'
                    'options = {n_train = 96, n_test = 64}\n[train]\nepochs = 1\nbatch_size = 32\n'
                    '[eval]\nensemble = 2\n[optim]\nlr = 0.001\n')
    b = stbin.train(toml, log=None)
    da, db = a.config.to_dict(), b.config.to_dict()
    assert da.pop("out_dir") != db.pop("out_dir") and da == db and a.config.optim.lr == 0.001
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


@pytest.mark.parametrize("config,match", [
    (42, "config must be a stbin Config, a dict or the path of a TOML file, got int"),
    ({"train": {"epochs": 0}}, r"train.epochs must be an integer >= 1, got 0"),
    ({"optim": {"lrr": 1}}, r"did you mean 'optim.lr'"),
    ({"data": {"workers": -1}}, r"data.workers must be an integer in \[0, 256\], got -1"),
    ({"data": {"name": "no_such_set"}}, r"unknown dataset 'no_such_set'"),
    ({"preset": "nope"}, r"nope"),
])
def test_bad_configs_raise_one_line_value_errors(tmp_path, config, match):
    if isinstance(config, dict):
        config = {**tiny(tmp_path / "run"), **config} if "preset" not in config else config
    with pytest.raises(ValueError, match=match) as e:
        stbin.train(config, log=None)
    assert "\n" not in str(e.value)


def test_missing_toml_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="no config file"):
        stbin.train(tmp_path / "nope.toml", log=None)


def test_resume_through_the_api_extends_the_run(tmp_path):
    out = tmp_path / "run"
    stbin.train(tiny(out), log=None)
    r = stbin.train(tiny(out), resume=True, overrides={"train": {"epochs": 3}}, log=None)
    assert r.metrics["epoch"] == 3 and [h["epoch"] for h in r.history] == [1, 2, 3]


def test_deterministic_algorithms_during_the_run_only(plugin_dir, tmp_path):
    import stbin_test_plugins as P

    assert not torch.are_deterministic_algorithms_enabled()
    stbin.train(tiny(tmp_path / "d", data={"name": f"{M}:data", "options": {}}, model={"name": f"{M}:recording"},
                     train={"deterministic": True, "epochs": 1}), log=None)
    assert P.SEEN["deterministic"] and all(P.SEEN["deterministic"])
    assert not torch.are_deterministic_algorithms_enabled()
    P.SEEN["deterministic"].clear()
    stbin.train(tiny(tmp_path / "e", data={"name": f"{M}:data", "options": {}}, model={"name": f"{M}:recording"},
                     train={"epochs": 1}), log=None)
    assert P.SEEN["deterministic"] and not any(P.SEEN["deterministic"])


def _equal_states(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("data", [{"name": f"{M}:data", "options": {}, "crop_padding": 1, "hflip": True},
                                  {"stream": True, "val_size": 16}])
def test_streamed_resume_is_bit_exact_and_independent_of_workers(plugin_dir, tmp_path, data):
    model = {"name": f"{M}:model"} if data.get("name") else {}
    out = tmp_path / "run"
    stbin.train(tiny(out, data=data, model=model, train={"epochs": 3}), log=None)
    straight = load_checkpoint(checkpoint_path(out, 3))
    checkpoint_path(out, 3).unlink()  # killed before the end of epoch 3
    resumed = stbin.train(tiny(out, data=data, model=model), resume=True, overrides={"train": {"epochs": 3}},
                          log=None)
    workers = stbin.train(tiny(tmp_path / "w", data={**data, "workers": 2}, model=model, train={"epochs": 3}),
                          log=None)
    for other in (resumed, workers):
        b = load_checkpoint(other.checkpoint)
        assert b["epoch"] == 3
        _equal_states(straight["model_state"], b["model_state"])
        assert straight["metrics"][-1]["train_loss"] == b["metrics"][-1]["train_loss"]
    assert resumed.test == workers.test


def test_streaming_trains_bit_for_bit_as_the_in_memory_path(tmp_path):
    """Without augmentation the streamed images are the in-memory ones, in the same order."""
    a = stbin.train(tiny(tmp_path / "m", data={"val_size": 16}), log=None)
    b = stbin.train(tiny(tmp_path / "s", data={"val_size": 16, "stream": True}), log=None)
    _equal_states(a.model.state_dict(), b.model.state_dict())
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.test == b.test


def test_streaming_an_in_memory_dataset_matches_its_accuracy_and_loss(tmp_path):
    """``data.stream = true`` feeds the same normalised images: same evaluation of the same model."""
    from stbin.training.config import from_dict
    from stbin.training.data_source import evaluate_source, open_source

    r = stbin.train(tiny(tmp_path / "m", train={"epochs": 1}), log=None)
    cfg = from_dict(r.config.to_dict())
    mem, _ = open_source(cfg, torch.device("cpu"))
    cfg.data.stream = True
    st, _ = open_source(cfg, torch.device("cpu"))
    assert st.streaming and not mem.streaming and st.input_shape == mem.input_shape
    a = evaluate_source(r.model, mem, "test", "mode", 50)
    b = evaluate_source(r.model, st, "test", "mode", 50)
    assert a["accuracy"] == b["accuracy"] and abs(a["loss"] - b["loss"]) < 1e-5


def test_docs_example_runs(tmp_path, monkeypatch):
    """The Python example of docs/training.md, run as written (in a temporary folder)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/training.md", "exec"), namespace)
    assert isinstance(namespace["result"], stbin.TrainResult)


@pytest.mark.parametrize("key", OPTION_KEYS)
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_check_options_applies_the_config_rules(key, bad):
    """The switches the API checks itself are checked by the one rule of each key (validation.RULES),
    also when a validated Config is changed afterwards: the same error, the same message."""
    from stbin.training.api import check_options, to_config
    from stbin.training.validation import RULES, ConfigError

    cfg = to_config({"preset": "tiny"})
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, bad)
    with pytest.raises(ConfigError) as expected:
        RULES[key](key, bad)
    with pytest.raises(ConfigError) as got:
        check_options(cfg)
    assert str(got.value) == str(expected.value) and key in str(got.value)
