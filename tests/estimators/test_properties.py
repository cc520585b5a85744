"""Properties every estimator must have: dtypes, no input mutation, seeding, shapes (hypothesis).

The calls and the hypothesis strategies are derived from the registries (estimators, noises,
sign proxies, STEs): a newly registered entry is tested without editing this file, and an
estimator without a call here fails :func:`test_every_registered_estimator_is_covered`."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from stbin.estimators.stochastic import MODES
from stbin.estimators import (ESTIMATORS, NOISES, SIGN_PROXIES, STES, bernoulli_weight, get_estimator, heaviside,
                              magnitude_aware_sign, quant_relu, sign, stochastic_sign)

SCALES = (1.0, 0.5, 2.0)  # noise scales, cycled over the registered noises


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


CALLS = {
    **{f"stochastic_sign/{n}/{mode}": (lambda x, n=n, s=SCALES[i % 3], mode=mode: stochastic_sign(x, n, s, mode, _seeded()))
       for i, n in enumerate(NOISES) for mode in MODES},
    **{f"sign/{p}": (lambda x, p=p: sign(x, p)) for p in SIGN_PROXIES},
    **{f"heaviside/{ste}": (lambda x, ste=ste: heaviside(x, ste)) for ste in STES},
    **{f"quant_relu/{ste}": (lambda x, ste=ste: quant_relu(x, 2, 0.5, ste)) for ste in STES},
    "magnitude_aware_sign": lambda x: magnitude_aware_sign(x),
    **{f"bernoulli_weight/{n}": (lambda x, n=n, s=SCALES[i % 3]: bernoulli_weight(x, n, s, "sample", _seeded()))
       for i, n in enumerate(NOISES)},
}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
EDGE = [0.0, -0.0, 1.0, -1.0, 0.5, 1e4, -1e4, 3.0, -0.25, 60000.0]


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_finite_in_every_dtype(name, dtype):
    x = torch.tensor(EDGE, dtype=dtype).view(2, 5).requires_grad_()
    out = CALLS[name](x)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert g.dtype == dtype and torch.isfinite(g).all()


@pytest.mark.parametrize("name", CALLS)
def test_half_precision_agrees_with_float32(name):
    x32 = torch.tensor(EDGE, dtype=torch.float32).view(2, 5)
    for dtype in (torch.float16, torch.bfloat16):
        x = x32.to(dtype)  # compare on the values the low-precision input really holds
        ref_in = x.float().requires_grad_()
        ref = CALLS[name](ref_in)
        (ref_g,) = torch.autograd.grad(ref, ref_in, torch.ones_like(ref))
        lo_in = x.clone().requires_grad_()
        lo = CALLS[name](lo_in)
        (lo_g,) = torch.autograd.grad(lo, lo_in, torch.ones_like(lo))
        torch.testing.assert_close(lo.float(), ref.to(dtype).float(), rtol=0, atol=0)
        torch.testing.assert_close(lo_g.float(), ref_g.to(dtype).float(), rtol=0, atol=0)


@pytest.mark.parametrize("name", CALLS)
def test_inputs_and_incoming_gradients_are_not_mutated(name):
    x = torch.tensor(EDGE, dtype=torch.float64).view(2, 5).requires_grad_()
    x_before = x.detach().clone()
    out = CALLS[name](x)
    g_out = torch.full_like(out, 0.5)
    g_before = g_out.clone()
    torch.autograd.grad(out, x, g_out)
    assert torch.equal(x.detach(), x_before)
    assert torch.equal(g_out, g_before)


def test_seeded_sampling_repeats_bit_for_bit():
    a = torch.randn(64, 33, generator=torch.Generator().manual_seed(0))
    assert len(NOISES) >= 3
    for noise in NOISES:
        x1 = stochastic_sign(a, noise, generator=torch.Generator().manual_seed(5))
        x2 = stochastic_sign(a, noise, generator=torch.Generator().manual_seed(5))
        x3 = stochastic_sign(a, noise, generator=torch.Generator().manual_seed(6))
        assert torch.equal(x1, x2) and not torch.equal(x1, x3)
        torch.manual_seed(11)
        y1 = stochastic_sign(a, noise)
        torch.manual_seed(11)
        assert torch.equal(y1, stochastic_sign(a, noise))


def test_every_registered_estimator_is_covered():
    assert len(ESTIMATORS) >= 6
    assert set(ESTIMATORS.names()) == {name.split("/")[0] for name in CALLS}


def test_registry_rejects_unknown_names():
    assert get_estimator("sign") is sign
    with pytest.raises(ValueError, match="unknown estimator 'sgn'.*bernoulli_weight, heaviside"):
        get_estimator("sgn")


def test_bad_arguments_name_the_offending_value():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="scale must be a positive finite number, got 0"):
        stochastic_sign(a, scale=0)
    with pytest.raises(ValueError, match="scale must be a positive finite number, got -2"):
        stochastic_sign(a, scale=-2)
    with pytest.raises(ValueError, match="unknown mode 'mod'.*mean, mode, sample"):
        stochastic_sign(a, mode="mod")
    with pytest.raises(TypeError, match="floating-point"):
        stochastic_sign(torch.zeros(3, dtype=torch.int64))


shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4)


@given(shape=shapes, dtype=st.sampled_from(DTYPES), noise=st.sampled_from(NOISES.names()),
       scale=st.floats(0.1, 10.0), mode=st.sampled_from(MODES), seed=st.integers(0, 2**31))
def test_stochastic_sign_shapes_and_values(shape, dtype, noise, scale, mode, seed):
    gen = torch.Generator().manual_seed(seed)
    a = (torch.randn(shape, generator=gen) * 3).to(dtype).requires_grad_()
    out = stochastic_sign(a, noise, scale, mode, generator=gen)
    assert out.shape == a.shape and out.dtype == dtype
    if mode == "mean":
        assert (out.abs() <= 1).all()
    else:
        assert ((out == 1) | (out == -1)).all()
    (g,) = torch.autograd.grad(out.sum(), a)
    assert g.shape == a.shape and torch.isfinite(g).all() and (g >= 0).all()


@given(shape=shapes, dtype=st.sampled_from(DTYPES), proxy=st.sampled_from(SIGN_PROXIES.names()))
def test_sign_shapes_and_values(shape, dtype, proxy):
    a = (torch.randn(shape) * 2).to(dtype).requires_grad_()
    out = sign(a, proxy)
    assert out.shape == a.shape and out.dtype == dtype and ((out == 1) | (out == -1)).all()
    (g,) = torch.autograd.grad(out.sum(), a)
    assert g.shape == a.shape and torch.isfinite(g).all()
