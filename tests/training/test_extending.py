"""A model, an in-memory dataset and a streaming dataset registered from this test file alone
(no file of stbin edited) train end to end by name, resume, and load back (docs/extending.md)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import stbin
from stbin.data import DATASETS
from stbin.data.datasets import DatasetInfo
from stbin.data.streaming import STREAMING
from stbin.models import MODELS, register_model
from stbin.models.common import make_activation, make_linear, quant_kwargs
from stbin.nn import BinaryLinear, StochasticSign
from stbin.training import load_model


def toy_net(in_features: int = 16, num_classes: int = 3, width: int = 8, **quant) -> nn.Module:
    """Flatten-Linear-BN-activation-binary Linear, quantized by the options every model shares (``quant``:
    those of QuantSpec, e.g. a preset's ``activation``/``weights``, checked with the nearest name)."""
    q = quant_kwargs("test_toy_net", quant, ("in_features", "num_classes", "width"))
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.BatchNorm1d(width), make_activation(q),
                         make_linear(q, width, num_classes))


def toy_images(split: str = "train", n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 4, 4) of 3 classes: the class sets the mean brightness."""
    g = torch.Generator().manual_seed(seed + (split == "test"))
    y = torch.randint(0, 3, (n,), generator=g)
    x = (y.view(-1, 1, 1, 1) * 80 + torch.randint(0, 60, (n, 1, 4, 4), generator=g)).to(torch.uint8)
    return x, y


def toy_stream(root=None, seed: int = 0, n: int = 96):
    """A streaming source: Datasets of (float image, label)."""
    xs = [toy_images(s, n, seed) for s in ("train", "test")]
    return TensorDataset(xs[0][0].float() / 255, xs[0][1]), TensorDataset(xs[1][0].float() / 255, xs[1][1]), 3


@pytest.fixture
def registered():
    register_model("test_toy_net")(toy_net)
    DATASETS.register("test_toy_images", DatasetInfo(toy_images, (0.4,), (0.3,), 3, False, {}, "toy"))
    STREAMING.register("test_toy_stream", toy_stream)
    yield
    for reg, name in ((MODELS, "test_toy_net"), (DATASETS, "test_toy_images"), (STREAMING, "test_toy_stream")):
        reg._items.pop(name, None)  # the registries are shared by the session


@pytest.mark.parametrize("dataset", ["test_toy_images", "test_toy_stream"])
def test_registered_model_and_dataset_train_resume_and_load(registered, tmp_path, dataset):
    cfg = {"preset": "tiny", "out_dir": str(tmp_path / "run"), "device": "cpu", "data": {"name": dataset},
           "model": {"name": "test_toy_net", "width": 6}, "train": {"epochs": 1, "batch_size": 32},
           "eval": {"ensemble": 0}}
    r = stbin.train(cfg, log=None)
    assert r.metrics["epoch"] == 1 and 0 <= r.test["mode"] <= 100
    r2 = stbin.train(cfg, overrides=["train.epochs=2"], resume=tmp_path / "run", log=None)
    assert [h["epoch"] for h in r2.history] == [1, 2]
    model = load_model(r2.checkpoint)   # rebuilt by its registered name and stored arguments
    assert isinstance(model[3], StochasticSign) and isinstance(model[4], BinaryLinear)  # the preset's quantization
    assert model[1].out_features == 6
