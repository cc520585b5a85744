"""Options of the recipes: the deep rows' dataset, --deep-set, --only, the device in the report."""

import json

import pytest

from stbin.recipes import Run, get_recipe, run_recipe, select_runs

TINY = ['data.name="synthetic"', "data.options={n_train=128, n_test=64, image_size=28}"]
DEEP_TINY = ["data.options={n_train=128, n_test=64, image_size=28}"]


def _runs():
    return [Run("a", "tiny", []), Run("b", "tiny", [], init_from="a"), Run("c", "tiny", [], init_from="b"),
            Run("d", "tiny", [])]


def test_select_runs_adds_the_runs_a_selected_one_starts_from():
    assert select_runs(_runs(), None) == {"a", "b", "c", "d"}
    assert select_runs(_runs(), ["c"]) == {"a", "b", "c"}
    assert select_runs(_runs(), ["d,b"]) == {"a", "b", "d"}
    assert select_runs(_runs(), ["[cd]"]) == {"a", "b", "c", "d"}
    with pytest.raises(ValueError, match="'x\\*' matches no run"):
        select_runs(_runs(), ["c", "x*"])
    with pytest.raises(ValueError, match="at least one"):
        select_runs(_runs(), [" , "])


@pytest.mark.parametrize("name", ["activation-quantized", "ste-instability", "sbn-study"])
def test_deep_rows_take_the_dataset_and_the_other_rows_keep_theirs(name):
    from stbin.training.config import build_config

    runs = get_recipe(name).runs(False, [0], "fashion_mnist")
    deep = [r for r in runs if r.dataset is not None]
    assert deep and all(r.dataset == "fashion_mnist" and "fashion_mnist" in r.key for r in deep)
    assert all(r.optional for r in deep)
    for r in runs:
        if r.init_from is not None:  # a run and the run it starts from train on the same data
            assert next(x for x in runs if x.key == r.init_from).dataset == r.dataset
    cifar = {r.key for r in get_recipe(name).runs(False, [0], "cifar10") if r.dataset is None}
    assert cifar == {r.key for r in runs if r.dataset is None}  # the own-data runs do not depend on --dataset
    for r in runs:
        if r.dataset is None:
            assert "lenet5" in r.key or r.key.startswith(("sbn-mnist-", "sbn-fashion_mnist-"))
        else:
            cfg = build_config(r.preset, overrides=r.overrides)
            assert cfg.model["name"] in ("vgg11", "resnet20", "binarynet_vgg", "sbn_conv")


def test_deep_rows_on_another_dataset_with_only_and_deep_set(tmp_path):
    """ResNet-20 rows on a registry dataset, one cell selected with --only: the cell and its float start
    train (with the --deep-set overrides, not the --set ones), nothing else; the table names the
    dataset and the report the device."""
    logs = []
    report = run_recipe("activation-quantized", tmp_path, quick=True, overrides=["data.train_limit=7"],
                        dataset="synthetic", deep_overrides=DEEP_TINY, only=["resnet20-synthetic-q2-relu-s0"],
                        log=logs.append)
    trained = sorted(s.split("]")[1].split(":")[0].strip() for s in logs if "done in" in s)
    assert trained == ["resnet20-synthetic-fp-s0", "resnet20-synthetic-q2-relu-s0"]
    text = report.read_text()
    assert "| ResNet-20 / synthetic | 2 |" in text and "| VGG-11 / synthetic | — | not run: not selected" in text
    assert "Device of the finished runs: cpu" in text and "`--dataset synthetic`" in text
    res = json.loads((tmp_path / "quick" / "activation-quantized" / "results.json").read_text())
    assert res["dataset"] == "synthetic" and res["only"] == ["resnet20-synthetic-q2-relu-s0"]
    assert res["runs"]["resnet20-synthetic-q2-relu-s0"]["device"] == "cpu"
    assert "not selected" in res["runs"]["lenet5-fp-s0"]["error"]
    cfg = json.loads((tmp_path / "quick" / "runs" / "resnet20-synthetic-fp-s0" / "recipe-result.json").read_text())
    cfg = cfg["config"]
    assert cfg["data"]["name"] == "synthetic" and cfg["data"]["options"]["n_train"] == 128
    assert cfg["data"]["train_limit"] == 10000  # the quick setting's, not the --set one (own-data runs only)
    assert cfg["model"]["width"] == 0.25 and cfg["model"]["bn_affine"] is False

    # a second selection reuses the finished cell although it is no longer selected
    logs.clear()
    run_recipe("activation-quantized", tmp_path, quick=True, overrides=["data.train_limit=7"], dataset="synthetic",
               deep_overrides=DEEP_TINY, only=["resnet20-synthetic-q2-clipped_relu-s0"], log=logs.append)
    assert any("resnet20-synthetic-q2-relu-s0: reused" in s for s in logs)
    assert [s for s in logs if "training" in s] == [next(s for s in logs if "q2-clipped_relu-s0: training" in s)]


def test_sbn_study_conv_part(tmp_path):
    report = run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, dataset="synthetic",
                        deep_overrides=DEEP_TINY + ["model.width=0.125"],
                        only=["sbn-conv-synthetic-binarynet-s0,sbn-conv-synthetic-logistic-mirror-adam-s0"],
                        log=lambda s: None)
    text = report.read_text()
    assert "conv / synthetic: mode" in text
    assert "conv / synthetic: the best stochastic binary network (SBN logistic noise" in text
    res = json.loads((tmp_path / "quick" / "sbn-study" / "results.json").read_text())["runs"]
    assert set(res["sbn-conv-synthetic-logistic-mirror-adam-s0"]["test"]) == {"mode", "mean", "ensemble"}
    cfgs = {k: json.loads((tmp_path / "quick" / "runs" / k / "recipe-result.json").read_text())["config"]["model"]
            for k in ("sbn-conv-synthetic-binarynet-s0", "sbn-conv-synthetic-logistic-mirror-adam-s0")}
    bn, sbn = cfgs["sbn-conv-synthetic-binarynet-s0"], cfgs["sbn-conv-synthetic-logistic-mirror-adam-s0"]
    assert (bn["name"], bn["activation"], bn["proxy"], bn["weights"]) == ("binarynet_vgg", "sign", "htanh", "sign")
    assert (sbn["name"], sbn["activation"], sbn["weights"]) == ("sbn_conv", "stochastic", "bernoulli")
    assert all(c["binary_first"] is False and c["binary_last"] is False and c["width"] == 0.125 for c in cfgs.values())


def test_unknown_dataset_names_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match="fashion_mnist"):
        run_recipe("activation-quantized", tmp_path, quick=True, dataset="fashion-mnst")


@pytest.mark.parametrize("overrides, deep, message", [
    ([], ["train.epochs=0"], "train.epochs must be an integer >= 1, got 0"),
    ([], ["optim.lrr=0.1"], "did you mean 'optim.lr'"),
    (["schedule.name=cosin"], [], "did you mean 'cosine'"),
])
def test_a_bad_set_or_deep_set_value_is_refused_before_any_run(tmp_path, overrides, deep, message):
    """Before: a bad --deep-set value became a 'not run' note in the table of every deep row, after the
    other rows had trained."""
    logs = []
    with pytest.raises(ValueError, match=message):
        run_recipe("ste-instability", tmp_path, quick=True, dataset="synthetic", overrides=TINY + overrides,
                   deep_overrides=DEEP_TINY + deep, log=logs.append)
    assert not logs and not (tmp_path / "quick" / "runs").exists()
