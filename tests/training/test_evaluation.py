"""The trainer's per-mode test accuracies, checked by value.

Each reported accuracy must equal an independent evaluation (written here, not the
trainer's ``evaluate``) of the saved model in that mode on the same test images; on a
stochastic binary network the mean-field ("mean") and the most-probable-state ("mode")
evaluations must differ, so a trainer that evaluated every mode the same way is caught.
"""

from __future__ import annotations

import torch

from stbin.data import load_dataset
from stbin.nn import eval_mode
from stbin.training import load_model
from stbin.training.config import build_config
from stbin.training.trainer import train


def _accuracy(model, data, mode):
    with torch.no_grad(), eval_mode(model, mode):
        logits = model(data.prepare(data.x_test))
    return 100.0 * int((logits.argmax(-1) == data.y_test).sum()) / len(data.y_test), logits


def test_each_mode_equals_an_independent_evaluation_of_the_saved_model(tmp_path):
    opts = {"n_train": 128, "n_test": 256}
    cfg = build_config("tiny", overrides=[f'out_dir="{tmp_path / "run"}"', "data.options={n_train=128, n_test=256}",
                                          "train.epochs=1", "eval.ensemble=0", 'eval.modes=["mean", "mode"]'])
    r = train(cfg, log=lambda s: None)
    model = load_model(r["checkpoint"])
    data = load_dataset("synthetic", seed=cfg.seed, **opts)
    acc_mode, logits_mode = _accuracy(model, data, "mode")
    acc_mean, logits_mean = _accuracy(model, data, "mean")
    assert not torch.allclose(logits_mode, logits_mean)  # the two modes really are different computations
    assert acc_mode != acc_mean
    assert r["test"]["mode"] == acc_mode
    assert r["test"]["mean"] == acc_mean
    assert set(r["test"]) == {"mode", "mean"}
