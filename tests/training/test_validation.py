"""Every config key is validated by its meaning; model arguments by their declared types.

Each bad value must raise a ValueError (ConfigError) whose message names the key and the
value; every preset must pass; every key of the config must have a rule.
"""

from __future__ import annotations

import math

import pytest

from stbin.training.config import all_keys, build_config
from stbin.training.model_args import check_model_kwargs
from stbin.training.presets import PRESETS, get_preset
from stbin.training.validation import RULES, ConfigError


def test_every_config_key_has_a_rule():
    assert set(RULES) == set(all_keys()) - {"model.name"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    get_preset(name).validate()


# (override, text the message must contain besides the key)
BAD = [
    ("seed=-1", "-1"), ("seed=1.5", "1.5"), ("seed=true", "True"),
    ("preset=3", "3"), ('device="gpu"', "'gpu'"), ('out_dir=""', "''"), ("init_from=3", "3"),
    ('data.name="mnsit"', "did you mean 'mnist'"), ("data.root=5", "5"), ("data.val_size=-1", "-1"),
    ("data.train_limit=-1", "-1"), ("data.train_limit=0", "0"), ("data.test_limit=0", "0"),
    ("data.test_limit=2.5", "2.5"), ("data.crop_padding=-2", "-2"), ("data.hflip=2", "2"),
    ("data.options=3", "3"), ("data.workers=-1", "-1"), ("data.workers=1.5", "1.5"), ("data.pin_memory=2", "2"),
    ("data.stream=1", "1"),
    ('optim.name="adamm"', "did you mean 'adam'"), ("optim.lr=0", "0"), ("optim.lr=-1", "-1"),
    ("optim.lr=inf", "inf"), ("optim.lr=nan", "nan"), ("optim.lr=1e308", "1e+308"), ('optim.lr="abc"', "'abc'"),
    ("optim.momentum=1", "1"), ("optim.momentum=-0.1", "-0.1"), ("optim.nesterov=1", "1"),
    ("optim.betas=[0.9]", "0.9"), ("optim.betas=[0.9, 1.0]", "1.0"), ("optim.betas=[-0.1, 0.9]", "-0.1"),
    ("optim.betas=0.9", "0.9"), ("optim.weight_decay=-1", "-1"), ("optim.latent_weight_decay=nan", "nan"),
    ('optim.latent="mirrorr"', "did you mean 'mirror'"), ('optim.projection="always"', "'always'"),
    ("optim.clip=0", "0"), ("optim.clip=-1", "-1"), ("optim.latent_lr_scale=0", "0"),
    ("optim.bop_threshold=-1", "-1"), ("optim.bop_gamma=0", "0"), ("optim.bop_gamma=2", "2"),
    ('schedule.name="cosin"', "did you mean 'cosine'"), ("schedule.warmup_epochs=-1", "-1"),
    ("schedule.warmup_epochs=inf", "inf"), ("schedule.min_lr=-0.1", "-0.1"), ("schedule.step_size=0", "0"),
    ("schedule.gamma=0", "0"), ("schedule.gamma=1.5", "1.5"),
    ("train.epochs=0", "0"), ("train.epochs=2.5", "2.5"), ("train.batch_size=0", "0"),
    ("train.eval_batch_size=-5", "-5"), ("train.amp=3", "3"), ("train.progress=2", "2"),
    ("train.keep_checkpoints=0", "0"), ("train.threads=-1", "-1"), ("train.threads=100000", "100000"),
    ("eval.ensemble=-1", "-1"), ('eval.modes="mode"', "'mode'"), ('eval.modes=["mod"]', "did you mean 'mode'"),
    ('eval.modes=["mode", "mode"]', "mode"),
    ("train.deterministic=1", "1"), ("train.sync_batchnorm=0", "0"), ("log.tensorboard=2", "2"),
    ("log.gradient_quality_every=-1", "-1"), ("log.gradient_quality_samples=5", "5"),
]


@pytest.mark.parametrize("override, value_text", BAD)
def test_bad_values_name_key_and_value(override, value_text):
    key = override.split("=", 1)[0]
    with pytest.raises(ValueError) as e:
        build_config("tiny", overrides=[override])
    msg = str(e.value)
    assert key in msg and value_text in msg, msg
    assert "\n" not in msg


def test_every_key_is_covered_by_a_bad_value():
    covered = {o.split("=", 1)[0] for o, _ in BAD}
    assert covered == set(RULES)


@pytest.mark.parametrize("overrides, message", [
    (["optim.lr=0.01", "schedule.min_lr=0.1"], "schedule.min_lr must be <= optim.lr"),
    (["train.epochs=2", "schedule.warmup_epochs=3"], "schedule.warmup_epochs must be <= train.epochs"),
    (['optim.name="sgd"', "optim.nesterov=true", "optim.momentum=0"], "optim.nesterov"),
    (["eval.modes=[]", "eval.ensemble=0"], "nothing would be evaluated"),
    (["optim.lr=1", "optim.latent_lr_scale=20000"], "optim.latent_lr_scale: the latent learning rate"),
])
def test_combinations_that_cannot_be_honoured(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_config("tiny", overrides=overrides)


def test_every_run_of_every_recipe_is_valid():
    """The rules refuse nonsense, not the settings the recipes use (e.g. sbn-study's SGD runs: a latent
    learning rate of 0.01 x 30000 = 300)."""
    from stbin.recipes import get_recipe, recipe_names

    n = 0
    for name in recipe_names():
        for quick in (True, False):
            for run in get_recipe(name).runs(quick, [0, 1]):
                items = [*run.overrides, 'out_dir="runs/x"'] + (['init_from="runs/y"'] if run.init_from else [])
                build_config(run.preset, overrides=items)
                n += 1
    assert n > 100


def test_good_values_are_normalised():
    cfg = build_config("tiny", overrides=["optim.betas=[0.5, 0.9]", "optim.lr=1", 'eval.modes=["mean"]',
                                          "data.train_limit=none", "train.threads=0"])
    assert cfg.optim.betas == (0.5, 0.9) and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.eval.modes == ("mean",) and cfg.data.train_limit is None


@pytest.mark.parametrize("model, kwargs, message", [
    ("mlp", {"hidden": -5}, "model.hidden must be a non-empty list of integers >= 1, got -5"),
    ("mlp", {"hidden": []}, "model.hidden"),
    ("mlp", {"hidden": [8, 0]}, "got [8, 0]"),
    ("mlp", {"hidden": "wide"}, "'wide'"),
    ("mlp", {"bits": 0}, "model.bits must be an integer >= 1, got 0"),
    ("mlp", {"batch_norm": 1}, "model.batch_norm must be true or false, got 1"),
    ("mlp", {"scale": math.inf}, "model.scale must be a number in (0, 1e+06], got inf"),
    ("mlp", {"weight_scale": 1e308}, "model.weight_scale must be a number in (0, 1e+06], got 1e+308"),
    ("mlp", {"weight_scale": -1.0}, "model.weight_scale"),
    ("mlp", {"activation": 3}, "model.activation must be a string, got 3"),
    ("lenet5", {"width": 0}, "model.width must be a number in (0, 1e+06], got 0"),
    ("resnet20", {"blocks": 0}, "model.blocks"),
    ("sbn_mlp", {"num_classes": 0}, "model.num_classes"),
])
def test_model_arguments(model, kwargs, message):
    with pytest.raises(ConfigError) as e:
        check_model_kwargs(model, kwargs)
    assert message in str(e.value)


def test_model_arguments_are_checked_when_a_run_is_built(tmp_path):
    from stbin.training.trainer import train

    cfg = build_config("tiny", overrides=["model.hidden=-5", f'out_dir="{tmp_path / "o"}"'])
    with pytest.raises(ValueError, match="model.hidden must be a non-empty list of integers >= 1, got -5"):
        train(cfg, log=lambda s: None)
    assert not list((tmp_path / "o").glob("*.pt"))


def test_config_file_that_is_not_utf8_is_named(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('preset = "tiny"\n# caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=f"config file {p} is not UTF-8"):
        build_config(path=p)
