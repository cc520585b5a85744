"""Float-weight transfer: latent weights from float weights, load_float_state_dict, init_from."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.estimators.noise import NOISES, get_noise
from stbin.nn import BinaryConv2d, BinaryLinear, binarize, eval_mode, load_float_state_dict
from stbin.nn.transfer import EPS, channel_quantile, latent_from_float


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 6), nn.BatchNorm1d(6),
                         nn.ReLU(), nn.Linear(6, 3))


def test_sign_transfer_is_exact():
    torch.manual_seed(0)
    W = torch.randn(6, 8, dtype=torch.float64)
    W[0, 0] = 0.0
    layer = BinaryLinear(8, 6, weights="sign", dtype=torch.float64)
    layer.load_float_weight(W)
    assert torch.equal(layer.latent_weight, W)
    expected = torch.where(W >= 0, 1.0, -1.0).to(torch.float64)
    assert torch.equal(layer.binary_weight(), expected)  # sign(0) = +1


def test_sign_transfer_with_xnor_scale_equals_scaled_sign_network():
    torch.manual_seed(1)
    model = _mlp().double().eval()
    x = torch.randn(16, 5, dtype=torch.float64)
    model(x)
    net = binarize(model, x[:2], weights="sign", channel_scale="mean_abs", activation="sign").eval()
    W = model[3].weight
    assert torch.equal(net[3].latent_weight, W)
    ref = _mlp().double().eval()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref[3].weight.copy_(torch.where(W >= 0, 1.0, -1.0) * W.abs().mean(1, keepdim=True))
    ref[2] = ref[5] = _Sign()
    torch.testing.assert_close(net(x), ref(x), rtol=1e-12, atol=1e-12)
    # learned scale starts at the XNOR scale alpha = mean |W|
    net = binarize(model, x[:2], weights="sign", channel_scale="learned")
    torch.testing.assert_close(net[3].learned_channel_scale.detach(), W.abs().mean(1))


class _Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


@pytest.mark.parametrize("noise", NOISES.names())
@pytest.mark.parametrize("s_w", [0.1, 1.0, 3.0])
def test_bernoulli_transfer_keeps_expected_weight(noise, s_w):
    torch.manual_seed(2)
    W = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    theta, c = latent_from_float(W, "bernoulli", noise, s_w, quantile=0.9)
    assert torch.equal(c, torch.quantile(W.abs().flatten(1), 0.9, dim=1))
    eta = get_noise(noise).mean(theta / s_w)  # E[w] = 2F(theta/s_w) - 1
    ratio = W / c.view(-1, 1, 1, 1)
    inside = ratio.abs() < 1 - EPS
    torch.testing.assert_close(eta[inside], ratio[inside], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eta[~inside], ratio[~inside].sign() * (1 - EPS), rtol=1e-9, atol=1e-9)
    assert torch.equal(torch.sign(theta[W != 0]), torch.sign(W[W != 0]))
    assert torch.isfinite(theta).all()


def test_bernoulli_transfer_with_learned_scale_reproduces_float_layer_in_mean():
    torch.manual_seed(3)
    float_conv = nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    conv = BinaryConv2d(3, 4, 3, padding=1, weight_noise="gaussian", weight_noise_scale=0.5, channel_scale="learned",
                        eval_mode="mean", dtype=torch.float64)
    conv.load_float_weight(float_conv.weight, quantile=1.0)
    with torch.no_grad():
        conv.bias.copy_(float_conv.bias)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    # c * E[w] = W except at the channel maximum, which is clipped to (1 - eps) c
    W = float_conv.weight.detach()
    c = W.abs().flatten(1).max(1).values.view(-1, 1, 1, 1)
    ref = nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(W.sign() * torch.minimum(W.abs(), (1 - EPS) * c))
        ref.bias.copy_(float_conv.bias)
    with eval_mode(conv, "mean"), torch.no_grad():
        torch.testing.assert_close(conv(x), ref(x), rtol=1e-10, atol=1e-10)


def test_channel_quantile_of_zero_channel_is_one_and_quantile_checked():
    W = torch.zeros(2, 3)
    W[1] = torch.tensor([1.0, -2.0, 4.0])
    assert torch.equal(channel_quantile(W, 1.0), torch.tensor([1.0, 4.0]))
    with pytest.raises(ValueError, match="quantile"):
        channel_quantile(W, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        latent_from_float(torch.tensor([[float("nan")]]), "sign", "logistic", 1.0)
    with pytest.raises(ValueError, match="shape"):
        BinaryLinear(3, 2).load_float_weight(torch.zeros(3, 2))


def test_load_float_state_dict_reports_and_maps():
    torch.manual_seed(4)
    model = _mlp()
    model.train()
    model(torch.randn(8, 5))  # running statistics
    net = binarize(_mlp(), torch.zeros(2, 5), weights="sign", transfer=False)
    rep = load_float_state_dict(net, model.state_dict())
    assert rep.transferred == ["3.weight -> 3.latent_weight"]
    assert "3.bias" in rep.copied and "0.weight" in rep.copied and "1.running_mean" in rep.copied
    assert rep.missing == rep.unexpected == rep.mismatched == []
    assert torch.equal(net[3].latent_weight, model[3].weight)
    for k, v in model.state_dict().items():
        if k != "3.weight":
            assert torch.equal(net.state_dict()[k], v)
    # a binary checkpoint of the same model is copied as it is
    other = binarize(_mlp(), torch.zeros(2, 5), weights="sign", transfer=False)
    rep = load_float_state_dict(other, net.state_dict())
    assert rep.transferred == [] and "3.latent_weight" in rep.copied
    assert torch.equal(other[3].latent_weight, net[3].latent_weight)


def test_load_float_state_dict_problems_and_strict():
    net = binarize(_mlp(), torch.zeros(2, 5), transfer=False)
    sd = _mlp().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    sd["3.weight"] = torch.zeros(6, 9)
    del sd["6.bias"]
    rep = load_float_state_dict(net, sd)
    assert rep.unexpected == ["extra.weight"]
    assert rep.mismatched == ["3.weight: (6, 9) vs (6, 8)"]
    assert "6.bias" in rep.missing and "3.latent_weight" in rep.missing
    with pytest.raises(ValueError, match="unexpected: extra.weight"):
        load_float_state_dict(net, sd, strict=True)


def test_load_float_state_dict_learned_scale_and_old_keys():
    net = binarize(_mlp(), torch.zeros(2, 5), channel_scale="learned", transfer=False)
    rep = load_float_state_dict(net, _mlp().state_dict())
    assert rep.missing == []  # the learned scale is set by the transfer
    old = {k.replace("learned_channel_scale", "weight_scale"): v for k, v in net.state_dict().items()}
    other = binarize(_mlp(), torch.zeros(2, 5), channel_scale="learned", transfer=False)
    rep = load_float_state_dict(other, old)
    assert "3.weight_scale" in rep.copied and rep.unexpected == []
    assert torch.equal(other[3].learned_channel_scale, net[3].learned_channel_scale)


def test_trainer_init_from_transfers_float_weights(tmp_path):
    from stbin.models import build_model
    from stbin.training import save_checkpoint
    from stbin.training.trainer import init_weights

    fp = build_model("mlp", in_features=6, hidden=[5, 4], num_classes=3, weights="real", activation="relu")
    save_checkpoint(tmp_path / "fp.pt", {"model": {"name": "mlp", "kwargs": {}},
                                                     "model_state": fp.state_dict()})
    q = build_model("mlp", in_features=6, hidden=[5, 4], num_classes=3, weights="sign")
    n = init_weights(q, tmp_path / "fp.pt")
    assert n == len(fp.state_dict())
    assert torch.equal(q[4].latent_weight, fp[4].weight)
