"""The trainer stops at the first non-finite loss (or weight) with one line naming epoch and step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stbin.models import MODELS
from stbin.training.config import build_config
from stbin.training.trainer import TrainingDiverged, train


class _Breaks(nn.Module):
    """A linear classifier that breaks after ``after`` training steps: NaN logits, or an inf weight."""

    def __init__(self, in_features: int, num_classes: int, after: int, how: str) -> None:
        super().__init__()
        self.fc, self.spare = nn.Linear(in_features, num_classes), nn.Parameter(torch.zeros(1))
        self.after, self.how, self.calls = after, how, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                if self.how == "nan":
                    return out * math.nan
                with torch.no_grad():
                    self.spare.fill_(math.inf)
        return out


def breaks(in_features: int = 64, num_classes: int = 10, after: int = 1, how: str = "nan", **quant) -> nn.Module:
    return _Breaks(in_features, num_classes, after, how)


@pytest.fixture(autouse=True)
def _breaks_model():
    """``test_breaks`` is registered for these tests only (the model registry is shared by the session)."""
    if "test_breaks" not in MODELS:
        MODELS.register("test_breaks", breaks)
    yield
    MODELS._items.pop("test_breaks", None)

SMALL = ["data.options={n_train=64, n_test=32}", "train.batch_size=32", "eval.ensemble=0", "train.epochs=3",
         'model={name="test_breaks"}', 'optim.latent="mirror"']


def _cfg(tmp_path, *extra):
    return build_config("tiny", overrides=[*SMALL, f'out_dir="{tmp_path / "run"}"', *extra])


def test_a_nan_loss_stops_the_run_at_its_step(tmp_path):
    # 2 steps per epoch; the 4th step's loss is NaN: epoch 2, step 4
    with pytest.raises(TrainingDiverged) as e:
        train(_cfg(tmp_path, "model.after=3"), log=lambda s: None)
    msg = str(e.value)
    assert "training diverged at epoch 2, step 4: the training loss is nan" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)
    names = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*.pt"))
    assert names == ["checkpoint-epoch0001.pt"]  # nothing written from the diverged epoch
    assert not (tmp_path / "run" / ".stbin-lock").exists()


def test_a_non_finite_weight_stops_the_run(tmp_path):
    with pytest.raises(TrainingDiverged, match="at epoch 1, step 2: parameter spare holds non-finite values"):
        train(_cfg(tmp_path, "model.after=1", 'model.how="inf"'), log=lambda s: None)
    assert not list((tmp_path / "run").glob("checkpoint-*.pt"))


def test_the_cli_reports_divergence_in_one_line_with_exit_2(tmp_path, capsys):
    from stbin.cli.main import main

    code = main(["train", "--preset", "tiny", "--no-progress", "--out", str(tmp_path / "run"),
                 *[a for s in SMALL for a in ("--set", s)], "--set", "model.after=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("stbin train: error: training diverged at epoch 1, step 2: the training loss is nan")
