"""The reproduction recipes in their --quick setting on tiny synthetic data (28x28 images)."""

import json

import pytest

from stbin.recipes import get_recipe, recipe_names, run_recipe
from stbin.training.config import build_config

TINY = ['data.name="synthetic"', "data.options={n_train=128, n_test=64, image_size=28}"]


def test_registry_and_unknown_name():
    assert recipe_names() == ["activation-quantized", "sbn-study", "ste-instability"]
    with pytest.raises(ValueError, match="activation-quantized"):
        get_recipe("activation-quantised")


@pytest.mark.parametrize("name", recipe_names())  # every registered recipe
@pytest.mark.parametrize("quick", [True, False])
def test_every_run_config_is_valid(name, quick):
    runs = get_recipe(name).runs(quick, [0, 1, 2])
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    for r in runs:
        cfg = build_config(r.preset, overrides=r.overrides + [f"seed={r.seed}"])
        assert cfg.seed == r.seed
        if r.init_from is not None:
            assert r.init_from in keys[: keys.index(r.key)]  # dependencies run first
    if name != "sbn-study" and not quick:
        lenet = [build_config(r.preset, overrides=r.overrides) for r in runs if r.key.startswith("lenet5-q")]
        assert lenet and all(c.optim.name == "sgd" and c.optim.momentum == 0.9 and c.model["weights"] == "real"
                             and c.model["bn_affine"] is False for c in lenet)
    if name == "activation-quantized" and not quick:
        assert all(c.train.epochs == 50 for c in lenet)


def test_activation_quantized_then_instability_reuses_runs(tmp_path):
    logs = []
    report = run_recipe("activation-quantized", tmp_path, quick=True, seeds=2, overrides=TINY, log=logs.append)
    text = report.read_text()
    # the rows name the data the runs trained on (here the synthetic stand-in of the test)
    assert "| LeNet-5 / synthetic | 2 |" in text and "| LeNet-5 / synthetic | 4 |" in text
    assert " ± " in text  # two seeds: mean ± std
    assert "| VGG-11 / CIFAR-10 | — | not run: CIFAR-10 not found" in text  # optional rows say why
    assert (tmp_path / "quick" / "activation-quantized" / "lenet5_2bit_loss.png").is_file()
    res = json.loads((tmp_path / "quick" / "activation-quantized" / "results.json").read_text())
    assert res["seeds"] == [0, 1] and "mode" in res["runs"]["lenet5-q4-relu-s1"]["test"]
    assert "error" in res["runs"]["vgg11-cifar10-q2-relu-s0"]
    # the quantized run started from the full-precision one
    assert any("lenet5-fp-s0" in r.get("init_from") or "" for r in [res["runs"]["lenet5-q2-identity-s0"]])

    logs.clear()
    report = run_recipe("ste-instability", tmp_path, quick=True, seeds=2, overrides=TINY, log=logs.append)
    assert any("lenet5-q2-relu-s0: reused" in s for s in logs)
    assert not any("lenet5-fp-s0: training" in s for s in logs)
    text = report.read_text()
    assert "| LeNet-5 / synthetic | 4 | clipped ReLU |" in text and "with the identity STE the training loss" in text
    assert (tmp_path / "quick" / "ste-instability" / "lenet5_4bit_identity_loss.png").is_file()
    # the control continuation keeps the source STE, from the same start, with the same two phases
    res = json.loads((tmp_path / "quick" / "ste-instability" / "results.json").read_text())["runs"]
    ctl, idt = res["lenet5-q2-relu-to-relu-s1"], res["lenet5-q2-relu-to-identity-s1"]
    assert ctl["tags"]["target"] == "relu" and idt["tags"]["target"] == "identity"
    assert res["lenet5-q2-relu-to-relu-small-s1"]["init_from"] == "lenet5-q2-relu-s1"
    assert "Control (ReLU STE kept)" in text and "worse than the control in" in text
    row = next(r for r in text.splitlines() if r.startswith("| LeNet-5 / synthetic | 2 | ReLU |"))
    assert row.count("|") == 16 and row.rstrip(" |").endswith("/2")  # 15 columns; paired over both seeds
    # the ResNet-20 continuations that could not start are summed up in one line, not one per run
    assert text.count("skipped: the run it starts from did not finish") == 1


def test_sbn_study_quick(tmp_path):
    report = run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=lambda s: None)
    text = report.read_text()
    assert "| BinaryNet" in text and "weight gradient through F'" in text and "mirror latent step, SGD" in text
    assert "mirror step vs gradient through F'" in text and "SPEC" not in text
    res = json.loads((tmp_path / "quick" / "sbn-study" / "results.json").read_text())
    t = res["runs"]["sbn-mnist-logistic-mirror-adam-s0"]["test"]
    assert set(t) == {"mode", "mean", "ensemble"}
    assert (tmp_path / "quick" / "sbn-study" / "mnist_train_loss.png").is_file()


def test_bad_seed_count(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        run_recipe("sbn-study", tmp_path, quick=True, seeds=0)


def test_finished_runs_are_reused_and_a_changed_config_retrains(tmp_path):
    from stbin.recipes.catalog import sbn_study

    one = sbn_study.runs
    try:  # only two runs, to keep the test short
        sbn_study_runs = [r for r in one(True, [0]) if r.tags["variant"] == "binarynet" and "part" not in r.tags]
        sbn_study.runs = lambda quick, seeds, dataset="cifar10": sbn_study_runs
        from stbin.recipes import RECIPES
        RECIPES["sbn-study"].runs = sbn_study.runs
        logs = []
        run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=logs.append)
        assert sum("training" in s for s in logs) == 2
        logs.clear()
        report = run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=logs.append)
        assert sum("reused" in s for s in logs) == 2 and not any("training" in s for s in logs)
        # the report of a reusing invocation still states the runs' own training time
        times = [json.loads((tmp_path / "quick" / "runs" / r.key / "recipe-result.json").read_text())["time_s"]
                 for r in sbn_study_runs]
        assert f"training time of the finished runs {sum(times):.0f} s in total" in report.read_text()
        logs.clear()
        run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY[:1] + ["data.options={n_train=96, n_test=32}"],
                   log=logs.append)
        assert sum("training" in s for s in logs) == 2
        ckpts = sorted(p.name for p in (tmp_path / "quick" / "runs" / "sbn-mnist-binarynet-s0").glob("checkpoint*"))
        assert ckpts == ["checkpoint-epoch0002.pt"]
    finally:
        sbn_study.runs = one
        RECIPES["sbn-study"].runs = one


def _test_numbers(out):
    res = json.loads((out / "quick" / "activation-quantized" / "results.json").read_text())
    return {k: v["test"] for k, v in res["runs"].items() if "test" in v}


def test_parallel_runs_give_the_same_numbers_and_respect_dependencies(tmp_path):
    """--jobs 2: runs train in two processes, each quantized run after its pretrained start;
    every run is seeded, so the numbers equal those of the one-process run bit for bit."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_recipe("activation-quantized", one, quick=True, seeds=1, overrides=TINY, log=lambda s: None)
    logs = []
    run_recipe("activation-quantized", two, quick=True, seeds=1, overrides=TINY, log=logs.append, jobs=2)
    a, b = _test_numbers(one), _test_numbers(two)
    assert len(a) == 7 and a == b
    started = [s.split("]")[1].split(":")[0].strip() for s in logs if "training" in s and "lenet5" in s]
    finished = [s.split("]")[1].split(":")[0].strip() for s in logs if "done in" in s]
    assert started[0] == "lenet5-fp-s0" and len(started) == 7
    for key in started[1:]:  # every quantized run started after the pretrained network had finished
        assert logs.index(next(s for s in logs if "lenet5-fp-s0: done" in s)) < \
            logs.index(next(s for s in logs if f"{key}: training" in s))
    assert sorted(started) == sorted(finished)


def test_epoch_scale_shortens_every_run_and_is_part_of_the_configuration(tmp_path):
    from stbin.recipes import RECIPES
    from stbin.recipes.catalog import sbn_study

    one = sbn_study.runs
    try:
        kept = [r for r in one(True, [0]) if r.tags["variant"] == "binarynet" and "part" not in r.tags]
        RECIPES["sbn-study"].runs = lambda quick, seeds, dataset="cifar10": kept
        logs = []
        report = run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=logs.append, epoch_scale=1.5)
        assert sum("training (3 epochs" in s for s in logs) == 2  # 2 quick epochs x 1.5
        assert "epochs scaled by 1.5" in report.read_text()
        hist = json.loads((tmp_path / "quick" / "runs" / "sbn-mnist-binarynet-s0" / "recipe-result.json")
                          .read_text())["history"]
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        logs.clear()
        run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=logs.append, epoch_scale=1.5)
        assert sum("reused" in s for s in logs) == 2
        logs.clear()
        run_recipe("sbn-study", tmp_path, quick=True, overrides=TINY, log=logs.append, epoch_scale=0.1)
        assert sum("training (1 epochs" in s for s in logs) == 2  # at least one epoch
    finally:
        RECIPES["sbn-study"].runs = one


@pytest.mark.parametrize("kw, match", [({"jobs": 0}, "--jobs"), ({"epoch_scale": 0.0}, "--epoch-scale"),
                                       ({"epoch_scale": float("nan")}, "--epoch-scale")])
def test_bad_jobs_and_epoch_scale(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run_recipe("sbn-study", tmp_path, quick=True, **kw)


class _Killed(BaseException):
    """Stands for the process being killed (not an Exception: nothing may catch it)."""


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_as_the_straight_run(tmp_path, monkeypatch):
    """A run killed after epoch 2 of 3 continues from its epoch-2 checkpoint when the recipe is rerun
    (not from scratch) and ends with the same history and test accuracies, bit for bit on CPU, as
    the run that was never interrupted; a changed configuration still trains from scratch."""
    import stbin.training.metrics_log as ml
    from stbin.recipes import RECIPES
    from stbin.recipes.catalog import sbn_study

    kept = [r for r in sbn_study.runs(True, [0]) if r.key == "sbn-mnist-binarynet-s0"]
    monkeypatch.setattr(RECIPES["sbn-study"], "runs", lambda quick, seeds, dataset="cifar10": kept)
    over = TINY + ["train.epochs=3"]
    run_recipe("sbn-study", tmp_path / "straight", quick=True, overrides=over, log=lambda s: None)

    calls, kills = [], []
    real = ml.write_metrics

    def killed_after_epoch_2(out, history):
        real(out, history)
        calls.append(len(history))
        if len(history) == 2 and not kills:  # once
            kills.append(1)
            raise _Killed

    monkeypatch.setattr(ml, "write_metrics", killed_after_epoch_2)
    with pytest.raises(_Killed):
        run_recipe("sbn-study", tmp_path / "cut", quick=True, overrides=over, log=lambda s: None)
    rdir = tmp_path / "cut" / "quick" / "runs" / "sbn-mnist-binarynet-s0"
    assert max(p.name for p in rdir.glob("checkpoint*")) == "checkpoint-epoch0002.pt"
    assert not (rdir / "recipe-result.json").exists()

    calls.clear()
    logs = []
    run_recipe("sbn-study", tmp_path / "cut", quick=True, overrides=over, log=logs.append)
    assert any("resuming after epoch 2 of 3" in s for s in logs)
    assert calls == [3]  # only the third epoch trained again

    def rec(root):
        return json.loads((root / "quick" / "runs" / "sbn-mnist-binarynet-s0" / "recipe-result.json").read_text())

    a, b = rec(tmp_path / "straight"), rec(tmp_path / "cut")
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("epoch_time_s", "images_per_s")} for e in h]  # noqa: E731
    assert a["test"] == b["test"] and strip(a["history"]) == strip(b["history"])
    assert b["resumed_after_epoch"] == 2 and "resumed_after_epoch" not in a

    # another configuration of the same run: its checkpoints are not resumed but removed
    calls.clear()
    logs.clear()
    run_recipe("sbn-study", tmp_path / "cut", quick=True, overrides=TINY + ["train.epochs=2"], log=logs.append)
    assert any("training (2 epochs" in s for s in logs) and calls == [1, 2]
    assert "resumed_after_epoch" not in rec(tmp_path / "cut")


def test_a_run_killed_after_its_last_epoch_only_evaluates_again(tmp_path, monkeypatch):
    """Killed between the last checkpoint and the result file: the rerun trains no epoch, evaluates the
    checkpointed network and records the straight run's numbers."""
    import stbin.training.metrics_log as ml
    from stbin.recipes import RECIPES
    from stbin.recipes.catalog import sbn_study

    kept = [r for r in sbn_study.runs(True, [0]) if r.key == "sbn-mnist-binarynet-s0"]
    monkeypatch.setattr(RECIPES["sbn-study"], "runs", lambda quick, seeds, dataset="cifar10": kept)
    run_recipe("sbn-study", tmp_path / "straight", quick=True, overrides=TINY, log=lambda s: None)
    calls, real = [], ml.write_metrics

    def killed_at_the_end(out, history):
        real(out, history)
        calls.append(len(history))
        if len(history) == 2 and len(calls) == 2:
            raise _Killed

    monkeypatch.setattr(ml, "write_metrics", killed_at_the_end)
    with pytest.raises(_Killed):
        run_recipe("sbn-study", tmp_path / "cut", quick=True, overrides=TINY, log=lambda s: None)
    logs = []
    run_recipe("sbn-study", tmp_path / "cut", quick=True, overrides=TINY, log=logs.append)
    assert any("resuming after epoch 2 of 2" in s for s in logs) and calls == [1, 2]
    a, b = (json.loads((root / "quick" / "runs" / "sbn-mnist-binarynet-s0" / "recipe-result.json").read_text())
            for root in (tmp_path / "straight", tmp_path / "cut"))
    assert a["test"] == b["test"] and len(b["history"]) == 2 and b["resumed_after_epoch"] == 2


def test_a_finished_run_is_reused_after_its_folder_moved_and_its_options_were_renamed(tmp_path):
    """The reuse check compares canonical configurations: the run folder (``out_dir``, the starting
    run's path) may move, a deprecated model option may be stored under its old name and keys added
    since with their default values may be missing; a real change (the learning rate) still retrains."""
    import json

    from stbin.recipes.base import RESULT_FILE
    from stbin.recipes.execution import cached_result, canonical_config
    from stbin.training.config import build_config

    cfg = build_config("lenet5_mnist", overrides=['out_dir="/old/place/runs/a"', 'init_from="/old/place/runs/src"'])
    stored = cfg.to_dict()
    stored["model"]["weight_scale"] = stored["model"].pop("weight_noise_scale")  # written before the rename
    del stored["log"]  # written before the [log] section existed
    rdir = tmp_path / "runs" / "a"
    rdir.mkdir(parents=True)
    (rdir / RESULT_FILE).write_text(json.dumps({"config": stored, "test": {"mode": 50.0}}))
    now = build_config("lenet5_mnist", overrides=[f'out_dir="{rdir}"', f'init_from="{tmp_path / "runs" / "src"}"'])
    assert cached_result(rdir, now.to_dict())["test"] == {"mode": 50.0}
    assert canonical_config(stored) == canonical_config(now.to_dict())
    changed = build_config("lenet5_mnist", overrides=[f'out_dir="{rdir}"', "optim.lr=0.02",
                                                      f'init_from="{tmp_path / "runs" / "src"}"'])
    assert cached_result(rdir, changed.to_dict()) is None
    other_start = build_config("lenet5_mnist", overrides=[f'out_dir="{rdir}"', 'init_from="/x/runs/other"'])
    assert cached_result(rdir, other_start.to_dict()) is None
