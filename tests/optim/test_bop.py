"""Bop (Helwegen et al., NeurIPS 2019): m <- (1-gamma) m + gamma g; flip w iff |m| > tau and sign(m) == sign(w).

The hand-computed sequence uses dyadic numbers, so every value is exact in float32 and
the boundary case |m| == tau is tested exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stbin.nn import BinaryLinear
from stbin.optim import Bop, split_parameters

GAMMA, TAU = 0.5, 0.25
P0 = [0.3, -0.2, 0.0, -0.7, 2.0]  # binarised: [+1, -1, +1, -1, +1]  (sign(0) = +1)
GRADS = [
    [0.75, -0.75, -0.75, 0.5, 0.5],
    [0.25, 0.0, -1.0, -0.5, 0.5],
    [-0.5, 0.5, 0.0, -1.0, 0.0],
]
# m_k = (1 - gamma) m_{k-1} + gamma g_k, by hand:
MOMENTA = [
    [0.375, -0.375, -0.375, 0.25, 0.25],
    [0.3125, -0.1875, -0.6875, -0.125, 0.375],
    [-0.09375, 0.15625, -0.34375, -0.5625, 0.1875],
]
# w_{k-1} * m_k: flip where > tau.
#  step 1: w0=[+,-,+,-,+], w*m=[.375,.375,-.375,-.25,.25] -> flips idx 0, 1 (idx 2, 3: signs disagree; idx 4: |m| == tau)
#  step 2: w1=[-,+,+,-,+], w*m=[-.3125,-.1875,-.6875,.125,.375] -> flip idx 4 (idx 3: agree but |m| <= tau)
#  step 3: w2=[-,+,+,-,-], w*m=[.09375,.15625,-.34375,.5625,-.1875] -> flip idx 3
WEIGHTS = [
    [-1.0, 1.0, 1.0, -1.0, 1.0],
    [-1.0, 1.0, 1.0, -1.0, -1.0],
    [-1.0, 1.0, 1.0, 1.0, -1.0],
]
FLIPS = [2, 1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_hand_computed_sequence(dtype: torch.dtype) -> None:
    p = nn.Parameter(torch.tensor(P0, dtype=dtype))
    opt = Bop([p], threshold=TAU, gamma=GAMMA)
    m_formula = torch.zeros(5, dtype=dtype)
    w_prev = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=dtype)
    for k, g in enumerate(GRADS):
        p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        m = opt.state[p]["momentum"]
        assert torch.equal(m, torch.tensor(MOMENTA[k], dtype=dtype)), k
        m_formula = (1 - GAMMA) * m_formula + GAMMA * p.grad
        assert torch.equal(m, m_formula), k
        # the rule, written independently of the hand-made table
        flip = (m.abs() > TAU) & ((m >= 0) == (w_prev >= 0))
        assert torch.equal(p.detach(), torch.where(flip, -w_prev, w_prev)), k
        assert torch.equal(p.detach(), torch.tensor(WEIGHTS[k], dtype=dtype)), k
        assert opt.last_flips == FLIPS[k] == int(flip.sum()), k
        assert p.dtype == dtype
        w_prev = p.detach().clone()


def test_parameters_binarised_at_first_step_even_without_flips() -> None:
    p = nn.Parameter(torch.tensor([0.3, -0.0, 0.0, -2.5, 1e-9]))
    opt = Bop([p], threshold=1.0, gamma=0.1)
    p.grad = torch.zeros(5)
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0]))
    assert opt.last_flips == 0


def test_no_flip_when_signs_disagree_or_below_threshold() -> None:
    p = nn.Parameter(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    opt = Bop([p], threshold=0.5, gamma=1.0)  # gamma = 1: m = g
    p.grad = torch.tensor([-10.0, 10.0, 0.5, -0.5])  # huge but against w; exactly tau with w
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert opt.last_flips == 0
    p.grad = torch.tensor([0.5000001, -0.5000001, 0.0, 0.0])
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([-1.0, 1.0, 1.0, -1.0]))
    assert opt.last_flips == 2


def test_params_without_grad_are_skipped_and_counts_add_over_groups() -> None:
    a = nn.Parameter(torch.tensor([1.0, 1.0, -1.0]))
    b = nn.Parameter(torch.tensor([-1.0, 1.0]))
    c = nn.Parameter(torch.tensor([0.7, -0.7]))
    opt = Bop([{"params": [a, c]}, {"params": [b], "threshold": 0.1, "gamma": 1.0}], threshold=0.5, gamma=1.0)
    a.grad = torch.tensor([1.0, 0.2, -1.0])  # flips idx 0, 2 (tau 0.5)
    b.grad = torch.tensor([-0.2, 0.05])      # flips idx 0 (tau 0.1)
    opt.step()
    assert torch.equal(a.detach(), torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.equal(b.detach(), torch.tensor([1.0, 1.0]))
    assert torch.equal(c.detach(), torch.tensor([0.7, -0.7]))  # no grad: untouched
    assert c not in opt.state or "momentum" not in opt.state[c]
    assert opt.last_flips == 3


def test_closure_is_called_and_loss_returned() -> None:
    p = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = Bop([p], threshold=0.1, gamma=1.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p * torch.tensor([1.0, 1.0])).sum()  # dL/dw = +1: pushes w towards -1
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 0.0
    assert torch.equal(p.detach(), torch.tensor([-1.0, -1.0]))


def test_bop_on_sign_layer_with_split_parameters() -> None:
    """Bop on the latent weights of a weights="sign" layer: the forward uses the flipped weights."""
    torch.manual_seed(0)
    layer = BinaryLinear(3, 2, weights="sign")
    latent, other = split_parameters(layer)
    assert latent == [layer.latent_weight] and other == [layer.bias]
    opt = Bop(latent, threshold=0.1, gamma=1.0)
    x = torch.tensor([[1.0, -2.0, 0.5]])
    w0 = layer.binary_weight()
    layer(x).sum().backward()  # dL/dw_cj = x_j
    g = layer.latent_weight.grad.clone()
    assert torch.equal(g, x.expand(2, 3))
    opt.step()
    expected = torch.where(w0 * g > 0.1, -w0, w0)
    assert torch.equal(layer.latent_weight.detach(), expected)
    assert torch.equal(layer.binary_weight(), expected)
    assert opt.last_flips == int((w0 * g > 0.1).sum()) > 0


@pytest.mark.parametrize("kw, bad", [
    (dict(gamma=0.0), "0.0"),
    (dict(gamma=1.5), "1.5"),
    (dict(gamma=-0.1), "-0.1"),
    (dict(gamma=float("nan")), "nan"),
    (dict(threshold=0.0), "0.0"),
    (dict(threshold=-1e-3), "-0.001"),
])
def test_bad_gamma_threshold_raise(kw: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"{'gamma' if 'gamma' in kw else 'threshold'}.*got {bad}"):
        Bop([nn.Parameter(torch.ones(2))], **kw)


def test_gamma_one_is_allowed_and_keeps_no_memory() -> None:
    # gamma = 1 (the upper end of (0, 1]): m is the latest gradient, so w flips iff w * g > tau
    p = nn.Parameter(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    opt = Bop([p], threshold=0.5, gamma=1.0)
    p.grad = torch.tensor([0.6, 0.4, -0.6, 0.6])  # w * g = 0.6, 0.4, 0.6, -0.6
    opt.step()
    assert torch.equal(opt.state[p]["momentum"], torch.tensor([0.6, 0.4, -0.6, 0.6]))
    assert torch.equal(p.detach(), torch.tensor([-1.0, 1.0, 1.0, -1.0])) and opt.last_flips == 2
    p.grad = torch.zeros(4)  # the earlier gradients are forgotten at once: no further flips
    opt.step()
    assert torch.equal(opt.state[p]["momentum"], torch.zeros(4)) and opt.last_flips == 0
    assert torch.equal(p.detach(), torch.tensor([-1.0, 1.0, 1.0, -1.0]))
