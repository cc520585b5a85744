"""Trainer: outputs, bit-exact resume on CPU, killed runs, damaged checkpoints, schedules."""

import pytest
import torch

from stbin.training import load_checkpoint, load_model
from stbin.training.checkpoint import CheckpointError, save_checkpoint
from stbin.training.config import build_config
from stbin.training.metrics_log import read_jsonl
from stbin.training.schedules import LRFactor
from stbin.training.trainer import checkpoint_path, latest_checkpoint, train

SMALL = ["data.options={n_train=96, n_test=64}", "train.batch_size=32", "eval.ensemble=2"]


def cfg_for(tmp_path, *extra, name="run"):
    return build_config("tiny", overrides=[f'out_dir="{tmp_path / name}"', *SMALL, *extra])


def quiet(_):
    pass


def test_outputs_of_a_run(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=2", "data.val_size=32")
    r = train(cfg, log=quiet)
    out = tmp_path / "run"
    assert set(r["test"]) == {"mode", "mean", "ensemble"}
    assert all(0 <= v <= 100 for v in r["test"].values())
    for f in ("report.md", "loss.png", "accuracy.png", "metrics.jsonl", "metrics.csv",
              "checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt"):
        assert (out / f).is_file(), f
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1, 2] and "val_accuracy" in rows[0]
    assert (out / "metrics.csv").read_text().count("\n") == 3
    report = (out / "report.md").read_text()
    for text in ("## Test accuracy", "2-sample ensemble", "![loss](loss.png)", "## Model summary", "compression",
                 "## Configuration", 'preset = "tiny"'):
        assert text in report
    model = load_model(r["checkpoint"])  # the checkpoint contract used by `stbin export`
    assert not model.training


def test_keeps_only_the_last_checkpoints(tmp_path):
    train(cfg_for(tmp_path, "train.epochs=3", "train.keep_checkpoints=1", "eval.ensemble=0"), log=quiet)
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*.pt")) == ["checkpoint-epoch0003.pt"]


def _states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _opt_states_equal(a, b):
    for i, st in a["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][i][k])), (i, k)


@pytest.mark.parametrize("extra", [[], ["data.crop_padding=2", "data.hflip=true", "optim.name=sgd",
                                        "schedule.name=step", "schedule.step_size=1"]])
def test_resume_is_bit_exact_after_a_kill(tmp_path, extra):
    cfg = cfg_for(tmp_path, "train.epochs=3", *extra)
    train(cfg, log=quiet)
    out = tmp_path / "run"
    straight = load_checkpoint(checkpoint_path(out, 3))
    # killed during epoch 3, while writing its checkpoint: a stray temporary file, no epoch-3 file
    checkpoint_path(out, 3).unlink()
    (out / ".checkpoint-epoch0003.pt.abc123.tmp").write_bytes(b"partial")
    ckpt = latest_checkpoint(out)
    assert ckpt["epoch"] == 2
    train(cfg, resume=ckpt, log=quiet)
    resumed = load_checkpoint(checkpoint_path(out, 3))
    _states_equal(straight["model_state"], resumed["model_state"])
    _opt_states_equal(straight["optimizer_state"], resumed["optimizer_state"])
    assert torch.equal(straight["rng_state"]["torch"], resumed["rng_state"]["torch"])
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    train(cfg_for(tmp_path, "train.epochs=2", "eval.ensemble=0"), log=quiet)
    out = tmp_path / "run"
    p2 = checkpoint_path(out, 2)
    p2.write_bytes(p2.read_bytes()[: p2.stat().st_size // 2])
    warnings = []
    ckpt = latest_checkpoint(out, warn=warnings.append)
    assert ckpt["epoch"] == 1 and warnings and "checkpoint-epoch0002.pt" in warnings[0]
    with pytest.raises(CheckpointError, match="corrupted, truncated or foreign"):
        latest_checkpoint(p2)  # an explicit file is never silently replaced


def test_no_checkpoint_to_resume(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        latest_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        latest_checkpoint(tmp_path / "nope")


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    train(cfg_for(tmp_path, "train.epochs=1", "eval.ensemble=0"), log=quiet)
    ckpt = latest_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match="other arguments"):
        train(cfg_for(tmp_path, "train.epochs=2", "model.hidden=[16]"), resume=ckpt, log=quiet)


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        train(build_config("tiny", overrides=[f'out_dir="{tmp_path / "file" / "sub"}"']), log=quiet)


def test_missing_data_is_reported_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        train(build_config("binarynet_cifar10", overrides=[f'out_dir="{tmp_path}"']), log=quiet)


def test_foreign_checkpoint_is_refused(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(CheckpointError, match="not an stbin checkpoint"):
        latest_checkpoint(p)
    save_checkpoint(tmp_path / "x.pt", {"model": {"name": "mlp", "kwargs": {}}, "model_state": {}})
    assert latest_checkpoint(tmp_path / "x.pt")["model"]["name"] == "mlp"


@pytest.mark.parametrize("name, expect", [
    ("constant", [1.0, 1.0, 1.0]),
    ("cosine", [1.0, 0.5, 0.0]),
    ("linear", [1.0, 0.5, 0.0]),
])
def test_schedules(name, expect):
    f = LRFactor(name, total_steps=10, steps_per_epoch=5)
    assert [round(f(s), 6) for s in (0, 5, 10)] == expect


def test_step_schedule_and_warmup():
    f = LRFactor("step", 100, 10, step_size=2, gamma=0.5)
    assert (f(0), f(19), f(20), f(45)) == (1.0, 1.0, 0.5, 0.25)
    w = LRFactor("cosine", 100, 10, warmup_steps=4)
    assert [w(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0] and w(4) == 1.0


def test_bop_trains_sign_weights_and_resumes_exactly(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=2", "optim.name=bop", 'model.weights="sign"', "optim.bop_threshold=1e-6",
                  "optim.bop_gamma=0.01", "eval.ensemble=0")
    train(cfg, log=quiet)
    out = tmp_path / "run"
    straight = load_checkpoint(checkpoint_path(out, 2))
    assert "bop_state" in straight
    lw = straight["model_state"]["4.latent_weight"]
    assert set(lw.unique().tolist()) <= {-1.0, 1.0}
    checkpoint_path(out, 2).unlink()
    train(cfg, resume=latest_checkpoint(out), log=quiet)
    _states_equal(straight["model_state"], load_checkpoint(checkpoint_path(out, 2))["model_state"])
    with pytest.raises(ValueError, match="weights = sign"):
        train(cfg_for(tmp_path, "optim.name=bop"), log=quiet)


def test_cifar_preset_on_a_generated_batches_folder(tmp_path):
    """CIFAR-10 presets run end to end (augmentation on) on a tiny folder in the standard format."""
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": list(range(8))}
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    cfg = build_config("sbn_conv_cifar10", overrides=[f'out_dir="{tmp_path / "run"}"', f'data.root="{folder}"',
                                                      "model.width=0.0625", "train.epochs=1", "train.batch_size=16",
                                                      "eval.ensemble=2"])
    r = train(cfg, log=quiet)
    assert set(r["test"]) == {"mode", "mean", "ensemble"}
    ckpt = load_checkpoint(r["checkpoint"])
    assert ckpt["model"]["kwargs"]["in_channels"] == 3 and ckpt["model"]["kwargs"]["image_size"] == 32
    assert load_model(ckpt)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_last_batch_of_one_image_is_skipped(tmp_path):
    r = train(cfg_for(tmp_path, "train.epochs=1", "data.options={n_train=65, n_test=32}", "eval.ensemble=0"),
              log=quiet)
    assert r["history"][-1]["step"] == 2


def test_init_from_copies_matching_weights_and_keeps_the_new_ste(tmp_path):
    from stbin.training.trainer import init_weights
    from stbin.models import build_model

    over = ['data.name="synthetic"', "data.options={n_train=64, n_test=32, image_size=28}", "train.epochs=1",
            "train.batch_size=32", "eval.ensemble=0", 'model.name="lenet5"', 'model.activation="relu"',
            'model.weights="real"', "model.bn_affine=false"]
    src = build_config("tiny", overrides=over + [f'out_dir="{tmp_path / "fp"}"'])
    train(src, log=lambda s: None)
    dst = build_config("tiny", overrides=over + [f'out_dir="{tmp_path / "q"}"', 'model.activation="quant_relu"',
                                                 'model.ste="identity"', f'init_from="{tmp_path / "fp"}"'])
    res = train(dst, log=lambda s: None)
    assert res["history"]
    q = build_model("lenet5", activation="quant_relu", ste="identity", weights="real", bn_affine=False)
    n = init_weights(q, tmp_path / "q")
    assert n > 0 and all(m.ste == "identity" for m in q.modules() if hasattr(m, "ste"))
    with pytest.raises(ValueError, match="no parameter"):
        init_weights(build_model("mlp", in_features=5, num_classes=3, hidden=[7]), tmp_path / "q")
