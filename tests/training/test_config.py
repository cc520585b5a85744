"""Configs: presets, TOML files, overrides, did-you-mean errors, validation."""

import pytest

from stbin.training.config import Config, build_config, dumps_toml, from_dict, parse_override, read_toml
from stbin.training.presets import DEFAULT_PRESET, PRESETS, float_twin, get_preset


def test_default_preset_is_the_main_job():
    cfg = build_config()
    assert cfg.preset == DEFAULT_PRESET == "sbn_mnist"
    assert cfg.data.name == "mnist"
    m = cfg.model
    assert (m["activation"], m["noise"], m["weights"], m["weight_noise"]) == ("stochastic", "logistic", "bernoulli",
                                                                            "logistic")
    assert cfg.optim.latent == "mirror"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(name):
    cfg = get_preset(name).validate()
    assert cfg.preset == name and isinstance(cfg.model["name"], str)


def test_overrides_parse_toml_values():
    assert parse_override("optim.lr=0.01") == {"optim": {"lr": 0.01}}
    assert parse_override("model.hidden=[256, 128]") == {"model": {"hidden": [256, 128]}}
    assert parse_override("data.name=fashion_mnist") == {"data": {"name": "fashion_mnist"}}
    assert parse_override("seed=3") == {"seed": 3}
    cfg = build_config("tiny", overrides=["optim.lr=1", "train.epochs=5", "model.hidden=[8]", "eval.modes=[\"mode\"]"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.train.epochs == 5
    assert cfg.model["hidden"] == [8] and cfg.eval.modes == ("mode",)


@pytest.mark.parametrize("override, message", [
    # typos: the nearest key is suggested
    ("optim.lrr=0.1", "did you mean 'optim.lr'"),
    ("trian.epochs=2", "did you mean 'train.epochs'"),
    ("train.epoch=2", "did you mean 'train.epochs'"),
    ("sed=1", "did you mean 'seed'"),
    # bad values: the key, the value and what is expected
    ("train.epochs=0", "train.epochs must be an integer >= 1"),
    ("optim.lr=-1", r"optim.lr must be a finite number in \(0, 10\], got -1"),
    ("optim.name=adm", "did you mean 'adam'"),
    ("schedule.name=cosin", "did you mean 'cosine'"),
    ("train.amp=3", "must be true or false"),
    ("novalue", "not of the form"),
])
def test_bad_overrides_are_refused_with_a_hint(override, message):
    with pytest.raises(ValueError, match=message):
        build_config("tiny", overrides=[override])


@pytest.mark.parametrize("first, last, key, expected", [
    ("train.epochs=true", "train.epochs=4", "train.epochs", 4),       # a wrong layer, then a right one
    ("train.epochs=none", "train.epochs=2.0", "train.epochs", 2),     # an integer written as 2.0 stays int
    ("seed=none", "seed=3.0", "seed", 3),
])
def test_each_layer_is_checked_against_the_declared_type_not_the_previous_layer(first, last, key, expected):
    # the coercion of a layer follows the field's declared default, not whatever an earlier layer set
    cfg = build_config("tiny", overrides=[first, last])
    section, _, name = key.rpartition(".")
    value = getattr(getattr(cfg, section) if section else cfg, name)
    assert value == expected and type(value) is type(expected)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'sbn_mnst' \\(did you mean 'sbn_mnist'\\?\\)"):
        build_config("sbn_mnst")


def test_toml_file_over_preset_and_overrides_last(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('preset = "tiny"\nseed = 4\n[optim]\nlr = 0.2\n[model]\nhidden = [8, 8]\n')
    cfg = build_config(path=p, overrides=["seed=5"])
    assert cfg.preset == "tiny" and cfg.seed == 5 and cfg.optim.lr == 0.2 and cfg.model["hidden"] == [8, 8]
    (tmp_path / "bad.toml").write_text("[optim\nlr = 1")
    with pytest.raises(ValueError, match="invalid TOML"):
        build_config(path=tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text("[optim]\nmomentun = 0.5\n")
    with pytest.raises(ValueError, match="typo.toml: unknown config key 'optim.momentun' \\(did you mean 'optim.momentum'"):
        build_config(path=tmp_path / "typo.toml")
    with pytest.raises(FileNotFoundError):
        read_toml(tmp_path / "missing.toml")


def test_changing_the_model_keeps_only_quantization_arguments():
    cfg = build_config("sbn_mnist", overrides=["model.name=lenet5"])
    assert cfg.model["name"] == "lenet5" and "hidden" not in cfg.model and cfg.model["weights"] == "bernoulli"


def test_round_trip_through_dict_and_toml(tmp_path):
    import tomllib
    cfg = build_config("tiny", overrides=["optim.clip=1.0"])
    d = cfg.to_dict()
    assert from_dict(d) == cfg
    assert from_dict(tomllib.loads(dumps_toml(d))).to_dict() == {k: v for k, v in d.items()}


def test_float_twin():
    twin = float_twin(get_preset("sbn_mnist"))
    assert twin.model["activation"] == "relu" and twin.model["weights"] == "real"
    assert isinstance(Config().validate(), Config)
