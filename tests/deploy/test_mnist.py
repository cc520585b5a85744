"""End to end: a network trained on MNIST predicts identically on the whole test set."""

import numpy as np
import pytest
import torch

from stbin.data import load_mnist
from stbin.deploy import export_checkpoint, load
from stbin.models import build_model
from stbin.nn import eval_mode
from stbin.optim import LatentWeightRule
from stbin.training import load_model, save_checkpoint


def prep(x):
    return (x.float() / 255.0 - 0.1307) / 0.3081  # as stbin train normalises MNIST


def train(hidden, n_train, epochs, seed=0):
    torch.manual_seed(seed)
    xtr, ytr = load_mnist("train")
    xtr, ytr = prep(xtr[:n_train]), ytr[:n_train]
    kwargs = {"hidden": list(hidden)}
    model = build_model("sbn_mlp", **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    LatentWeightRule(model, gradient="mirror").attach(opt)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n_train)
        for i in range(0, n_train, 100):
            idx = perm[i: i + 100]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {"model": {"name": "sbn_mlp", "kwargs": kwargs}, "model_state": model.state_dict()}


def check_identical(ckpt, tmp_path):
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, ckpt)
    export_checkpoint(path, tmp_path / "m.stbn")
    net = load(tmp_path / "m.stbn")
    model = load_model(path)
    xte, yte = load_mnist("test")
    x = prep(xte)
    with torch.no_grad(), eval_mode(model, "mode"):
        ref = model(x).argmax(-1).numpy()
    got = net.predict(x, batch_size=2500).argmax(-1)
    assert len(got) == 10000
    np.testing.assert_array_equal(got, ref)
    return (got == yte.numpy()).mean()


def test_small_trained_network_identical_on_the_whole_test_set(tmp_path):
    acc = check_identical(train((64, 64, 64), 3000, 1), tmp_path)
    assert acc > 0.2  # trained (chance is 0.1); a short run of a stochastic net is weak in mode


@pytest.mark.slow
def test_demo_network_identical_on_the_whole_test_set(tmp_path):
    acc = check_identical(train((512, 512, 512), 60000, 1), tmp_path)
    assert acc > 0.85


def test_export_names_the_options_by_their_current_names(tmp_path):
    """A checkpoint written before weight_scale was renamed weight_noise_scale exports with the new name."""
    torch.manual_seed(0)
    kwargs = {"in_features": 12, "hidden": [8, 8], "weight_scale": 0.5}
    with pytest.warns(DeprecationWarning):
        model = build_model("sbn_mlp", **kwargs)
    ckpt = {"model": {"name": "sbn_mlp", "kwargs": kwargs}, "model_state": model.state_dict()}
    net = export_checkpoint(ckpt, tmp_path / "m.stbn")
    stored = load(tmp_path / "m.stbn").meta["model"]["kwargs"]
    assert stored == net.meta["model"]["kwargs"] == {"in_features": 12, "hidden": [8, 8], "weight_noise_scale": 0.5}
