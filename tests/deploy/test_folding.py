"""BN + sign folded into thresholds reproduce PyTorch's decision for every integer dot."""

import numpy as np
import pytest
import torch
from torch import nn

from stbin.deploy.compile import float_thresholds, integer_thresholds
from stbin.nn import Sign, StochasticSign


def random_bn(c, seed, zero=2, tiny=2):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(c).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=g))          # negative gammas flip the comparison
        bn.weight[:zero] = 0.0                                 # gamma = 0: constant output
        bn.weight[zero:zero + tiny] = 1e-30
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g) * 5)
        bn.running_var.copy_(torch.rand(c, generator=g) * 4 + 0.01)
    return bn


@pytest.mark.parametrize("k, scale", [(1, None), (7, None), (64, None), (65, "pos"), (300, "mixed")])
@pytest.mark.parametrize("sign", [StochasticSign(), Sign()])
def test_integer_threshold_exhaustive(k, scale, sign):
    c = 40
    bn = random_bn(c, k)
    g = torch.Generator().manual_seed(k + 1)
    bias = torch.randn(c, generator=g)
    bias[-5:] = torch.tensor([0.5, -0.5, 0.0, 1.5, -2.5])   # boundaries exactly on integers / half-integers
    with torch.no_grad():
        bn.running_mean[-5:] = 0.0
        bn.bias[-5:] = 0.0
    c_scale = None
    if scale == "pos":
        c_scale = torch.rand(c, generator=g) + 0.01
    elif scale == "mixed":
        c_scale = torch.randn(c, generator=g)                # a learned scale may be negative or zero
        c_scale[0] = 0.0

    def pre(d):
        y = d.to(torch.float32)
        if c_scale is not None:
            y = y * c_scale
        return y + bias

    def decide(d):
        with torch.no_grad():
            return sign.eval()(bn(pre(d).view(1, c))).view(c) > 0

    S, T = integer_thresholds(decide, c, k)
    d = torch.arange(-k, k + 1)
    with torch.no_grad():
        y = pre(d.view(-1, 1).expand(-1, c))
        want = (sign(bn(y)) > 0).numpy()
    got = (S[None, :].astype(np.int64) * d.numpy()[:, None] >= T[None, :])
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(S)) <= {-1, 1}


def test_float_threshold_matches_pytorch_around_the_boundary():
    c = 64
    bn = random_bn(c, 3)
    sign = StochasticSign().eval()

    def decide(y):
        with torch.no_grad():
            return sign(bn(y.view(1, c))).view(c) > 0

    S, T = float_thresholds(decide, c)
    rng = np.random.default_rng(0)
    finite = np.where(np.isfinite(T), T, 0).astype(np.float32)
    cands = [rng.standard_normal((200, c)).astype(np.float32) * 10, np.broadcast_to(finite, (1, c))]
    for steps in (1, 2, 3):
        up, dn = finite.copy(), finite.copy()
        for _ in range(steps):
            up = np.nextafter(up, np.float32(np.inf))
            dn = np.nextafter(dn, np.float32(-np.inf))
        cands += [up[None], dn[None]]
    y = np.concatenate(cands).astype(np.float32)
    with torch.no_grad():
        want = (sign(bn(torch.from_numpy(y))) > 0).numpy()
    with np.errstate(invalid="ignore"):
        got = S[None, :] * y >= T[None, :]
    np.testing.assert_array_equal(got, want)
