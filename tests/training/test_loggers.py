"""Loggers: TensorBoard event files read back with tensorboard's reader; the binary-network
diagnostics checked against independent computations by a user logger."""

from __future__ import annotations

import sys

import pytest
import torch

import stbin
from stbin.cli.main import main
from stbin.training.loggers import Logger
from stbin.training.metrics_log import read_jsonl

pytest.importorskip("tensorboard")


def tiny(out, **train):
    return {"preset": "tiny", "device": "cpu", "out_dir": str(out), "data": {"options": {"n_train": 96, "n_test": 64},
            "val_size": 32}, "train": {"epochs": 2, "batch_size": 32, **train},
            "eval": {"ensemble": 2, "modes": ["mode", "mean", "sample"]}}


class Checker(Logger):
    """Recomputes the flip ratio and the saturated fraction from the model itself."""

    def start(self, info):
        self.model = info["model"]
        self.layers = [m for m in self.model.modules() if hasattr(m, "latent_weight")]
        self.signs = self._signs()
        self.rows = []
        self.finished = None

    def _signs(self):
        return [(m.latent_weight.detach() >= 0).clone() for m in self.layers]

    def log(self, scalars, step):
        self.rows.append((step, dict(scalars)))
        if "binary/flip_ratio" in scalars:
            now = self._signs()
            changed = sum(int((a != b).sum()) for a, b in zip(self.signs, now))
            assert scalars["binary/flip_ratio"] == changed / sum(s.numel() for s in now)
            self.signs = now
        if "binary/saturated" in scalars:
            sat = tot = 0
            for m in self.layers:  # logistic weight noise: P(w=+1) = sigmoid(theta / s_w)
                p = torch.sigmoid(m.latent_weight.detach().double() / m.weight_noise_scale)
                sat += int(((p - 0.5).abs() > 0.49).sum())
                tot += p.numel()
            assert abs(scalars["binary/saturated"] - sat / tot) < 1e-6

    def finish(self, results):
        self.finished = results


def test_tensorboard_event_files_have_the_expected_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    checker = Checker()
    cfg = tiny(tmp_path / "run")
    cfg["log"] = {"tensorboard": True}
    r = stbin.train(cfg, loggers=[checker], log=None)
    tb = tmp_path / "run" / "tensorboard"
    assert list(tb.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    layers = [n for n, m in r.model.named_modules() if hasattr(m, "latent_weight")]
    units = [n for n, m in r.model.named_modules() if type(m).__name__ == "StochasticSign"]
    assert layers and units
    expected = {"train/loss", "train/lr/group0", "binary/flip_ratio", "binary/flip_ratio_epoch", "binary/saturated",
                "train/loss_epoch", "train/accuracy", "val/loss", "val/accuracy/mode", "val/accuracy/mean",
                "val/accuracy/sample", "test/accuracy/mode", "test/accuracy/mean", "test/accuracy/sample",
                "test/accuracy/ensemble"}
    expected |= {f"binary/saturated/{n}" for n in layers} | {f"units/mean_abs_Ex/{n}" for n in units}
    assert expected <= tags, sorted(expected - tags)
    steps = r.metrics["step"]
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, steps + 1))
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")  # the JSONL log stays, and agrees
    epoch_loss = acc.Scalars("train/loss_epoch")
    assert [e.step for e in epoch_loss] == [row["step"] for row in rows]
    assert all(abs(e.value - row["train_loss"]) < 1e-5 for e, row in zip(epoch_loss, rows))
    assert all(0 <= e.value <= 1 for t in ("binary/flip_ratio", "binary/saturated") for e in acc.Scalars(t))
    assert all(0 < e.value < 1 for e in acc.Scalars(f"units/mean_abs_Ex/{units[0]}"))
    assert abs(acc.Scalars("test/accuracy/mode")[0].value - r.test["mode"]) < 1e-4
    assert checker.finished is not None and len([1 for _, s in checker.rows if "binary/flip_ratio" in s]) == steps


def test_missing_tensorboard_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code = main(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--set", "log.tensorboard=true",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'stbin[tensorboard]'" in err, err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("checkpoint-*"))


def test_bad_loggers_and_switches_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must have start"):
        stbin.train(tiny(tmp_path / "a"), loggers=[object()], log=None)
    with pytest.raises(ValueError, match="log.tensorboard must be true or false, got 'yes'"):
        stbin.train({**tiny(tmp_path / "b"), "log": {"tensorboard": "yes"}}, log=None)
