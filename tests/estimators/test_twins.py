"""Int8 twins of sampled ±1 tensors: the kernels write sign(x) exactly (fix-up and redo included), the samples are
unchanged, and the registry returns a twin only for the very tensor object it belongs to, unchanged since."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
import torch

from stbin.estimators import _logistic_sampling as fast
from stbin.estimators import _logistic_sampling_numba as fastk
from stbin.estimators import _twins, bernoulli_weight, sampling, stochastic_sign
from stbin.estimators import _uniform_sampling_numba as uk
from stbin.estimators import random as srandom
from stbin.estimators._common import path_thresholds
from stbin.estimators.latent import BernoulliWeight
from stbin.estimators.noise import get_noise
from stbin.estimators.stochastic import StochasticSign

SEED = torch.tensor([0x01234567, 0x89ABCDEF, 0xDEADBEEF, 7])
#: every size takes the one-pass kernels, with a twin, over numba's threads where two torch threads are set
TWINS = {"elementwise_kernel_min_numel": 1, "twin_min_numel": 1, "parallel_sampling_min_numel": 1}
SIZES = [1, 1023, 1024, 1025, 3 * fastk.ITEM_ELEMENTS + 1500]


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that always wants twins (whatever the CPU: the registry is tested, not the product)."""
    monkeypatch.setitem(_twins._CONSUMER, "wanted", lambda: True)


@pytest.fixture
def threads(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


def near_threshold(n: int, dtype: torch.dtype, scale: float, near: float = 0.5) -> torch.Tensor:
    """``a`` with ``sigmoid(a / s)`` next to the element's ``u`` on a fraction ``near`` of the elements (undecided
    ones: left to the exact fix-up, or beyond 64 in a work item, to its redo), the rest normal draws."""
    u = (srandom.stream_uniforms(n, SEED)).clamp(1e-9, 1 - 1e-9)
    a = (torch.log(u) - torch.log1p(-u)) * scale
    g = torch.Generator().manual_seed(n)
    far = torch.rand(n, generator=g) >= near
    return torch.where(far, torch.randn(n, generator=g, dtype=torch.float64) * 3, a).to(dtype)


def sign8(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x).to(torch.int8)


def two_pass(a: torch.Tensor, scale: float) -> torch.Tensor:
    p = torch.sigmoid(a / scale if scale != 1.0 else a).contiguous()
    sampling._kernel.compare_inplace(p.view(-1).numpy(), SEED.numpy(), False)
    return p


# -- the kernels ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("parallel", [False, 1, 2])  # the serial kernel, the parallel one on 1 and 2 threads
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_logistic_twin_is_the_sign_of_the_samples_which_are_unchanged(n: int, parallel: int, dtype: torch.dtype,
                                                                      scale: float) -> None:
    a = near_threshold(n, dtype, scale)
    plain, out = torch.empty_like(a), torch.empty_like(a)
    twin = torch.full((n,), 5, dtype=torch.int8)  # 5: no element left unwritten

    def redo(lo: int, hi: int) -> None:  # items with more undecided elements than their row holds
        out[lo:hi] = two_pass(a, scale)[lo:hi].to(dtype)
        plain[lo:hi] = out[lo:hi]

    threads = parallel or 1
    assert not fast.sample_into(plain, a, scale, SEED, bool(parallel), threads, redo)  # no twin given: none valid
    assert fast.sample_into(out, a, scale, SEED, bool(parallel), threads, redo, twin)
    assert torch.equal(out, plain) and torch.equal(twin, sign8(out)) and set(out.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logistic_fix_up_writes_the_twin_of_the_undecided_elements(dtype: torch.dtype) -> None:
    n = 3 * fastk.ITEM_ELEMENTS + 7
    a = near_threshold(n, dtype, 1.0, near=2e-4)  # about 13 undecided elements a work item: no redo
    raw, twin = torch.empty_like(a), torch.empty(n, dtype=torch.int8)
    *_, nan = fastk.decide(a.numpy(), raw.numpy(), 1.0, SEED.numpy(), False, twin=twin.numpy(),
                           cap=fastk.ITEM_ELEMENTS)
    undecided = raw == 0
    assert not nan and undecided.sum() > 20  # the fix-up has work to do ...
    assert torch.equal(twin, sign8(raw))  # ... and the kernel's twin marks those elements 0
    out = torch.empty_like(a)
    assert fast.sample_into(out, a, 1.0, SEED, False, 1, None, twin)  # type: ignore[arg-type]
    assert torch.equal(out, two_pass(a, 1.0).to(dtype)) and torch.equal(twin, sign8(out))
    assert (twin[undecided] != 0).all()


def test_logistic_redo_of_an_overflowed_item_writes_its_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 4 * fastk.ITEM_ELEMENTS - 100
    a = near_threshold(n, torch.float32, 1.0)
    out, twin, calls = torch.empty_like(a), torch.full((n,), 5, dtype=torch.int8), []

    def redo(lo: int, hi: int) -> None:
        calls.append((lo, hi))
        out[lo:hi] = two_pass(a, 1.0)[lo:hi]

    real = fastk.decide
    monkeypatch.setattr(fastk, "decide", lambda *args, **kw: real(*args, **{**kw, "cap": 2}))
    assert fast.sample_into(out, a, 1.0, SEED, False, 1, redo, twin)
    assert len(calls) == 4  # every item overflowed its row of 2 and was redone
    assert torch.equal(out, two_pass(a, 1.0)) and torch.equal(twin, sign8(out))


def test_logistic_fix_up_and_redo_report_a_nan_sample() -> None:
    a = torch.tensor([0.5, math.nan, -0.5] * 8, dtype=torch.float64).numpy()
    out, twin = np.zeros_like(a), np.full(a.size, 5, np.int8)
    idx = np.arange(a.size)
    assert fast.fix_exact(out, a, 1.0, idx[None], np.full((1, a.size), 1 << 15, np.uint32), np.array([a.size]), SEED,
                          twin)
    assert (twin == [1, 0, -1] * 8).all() and np.isnan(out[1::3]).all()
    assert not fast.fix_exact(out, a, 1.0, idx[None, ::3], np.zeros((1, 8), np.uint32), np.array([8]), SEED, twin)
    assert fast._sign_into(twin, out) and (twin == [1, 0, -1] * 8).all()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("parallel", [False, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_uniform_twin_is_the_sign_of_the_samples_which_are_unchanged(n: int, parallel: int, dtype: torch.dtype,
                                                                     scale: float) -> None:
    a = (torch.rand(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * 2.4 - 1.2).to(dtype) * scale
    plain, out = torch.empty_like(a), torch.empty_like(a)
    twin = torch.full((n,), 5, dtype=torch.int8)
    threads = parallel or 1
    assert not uk.sample_into(a.numpy(), plain.numpy(), scale, SEED.numpy(), bool(parallel), threads)
    assert uk.sample_into(a.numpy(), out.numpy(), scale, SEED.numpy(), bool(parallel), threads, twin=twin.numpy())
    assert torch.equal(out, plain) and torch.equal(twin, sign8(out))
    assert n == 1 or ((out == 1).any() and (out == -1).any())


@pytest.mark.parametrize("parallel", [False, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_twin_of_a_tie_is_the_sign_of_its_settled_sample(parallel: int, dtype: torch.dtype) -> None:
    """A third of the elements are ties (``F(a)`` inside the element's half-word interval, where the kernel keeps
    ``p`` and writes no sign): their samples follow the stream's rule and their twins are their signs."""
    n = 2 * fastk.ITEM_ELEMENTS + 777
    h = srandom.stream_halves(n, SEED).double()
    g = torch.Generator().manual_seed(5)
    tie = torch.rand(n, generator=g) < 1 / 3
    p = torch.where(tie, (h + torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 0.25) * 2.0 ** -16,
                    torch.rand(n, generator=g, dtype=torch.float64))
    p = (p * 2.0 ** 17).round() * 2.0 ** -17  # 17 bits: a = 2p - 1 and F(a) = (a + 1) / 2 are exact in float32
    a = (2 * p - 1).to(dtype)
    out, twin = torch.empty_like(a), torch.full((n,), 5, dtype=torch.int8)
    assert uk.sample_into(a.numpy(), out.numpy(), 1.0, SEED.numpy(), bool(parallel), parallel or 1, twin=twin.numpy())
    inside = tie & (p > h * 2.0 ** -16) & (p < (h + 1) * 2.0 ** -16)
    assert inside.sum() > n // 4  # the ties are there
    assert torch.equal(out, srandom.sign_from_probability(p.to(dtype), SEED).to(dtype))
    assert torch.equal(twin, sign8(out)) and not (twin == 0).any()


@pytest.mark.parametrize("parallel", [False, True])
def test_kernels_report_a_nan_sample_and_refuse_a_bad_twin(parallel: bool) -> None:
    n = 2 * fastk.ITEM_ELEMENTS + 3
    for pos in (0, n // 2, n - 1):
        a = torch.randn(n, generator=torch.Generator().manual_seed(pos))
        a[pos] = math.nan
        out, twin = torch.empty_like(a), torch.empty(n, dtype=torch.int8)
        assert fastk.decide(a.numpy(), out.numpy(), 1.0, SEED.numpy(), parallel, 2, twin=twin.numpy())[3]
        assert not uk.sample_into(a.numpy(), out.numpy(), 1.0, SEED.numpy(), parallel, 2, twin=twin.numpy())
        assert twin[pos] == 0 and out[pos].isnan()
    a = np.zeros(8, np.float32)
    for bad in (np.zeros(7, np.int8), np.zeros(8, np.uint8), np.zeros((2, 4), np.int8)):
        with pytest.raises(ValueError, match="int8 twin of 8"):
            fastk.decide(a, a.copy(), 1.0, SEED.numpy(), False, twin=bad)
        with pytest.raises(ValueError, match="int8 twin of 8"):
            uk.sample_into(a, a.copy(), 1.0, SEED.numpy(), False, twin=bad)


# -- the public calls and the registry --------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
@pytest.mark.parametrize("noise", ["logistic", "uniform"])
@pytest.mark.parametrize("n", SIZES)
def test_public_calls_attach_the_twin_of_their_output(consumer: None, threads: int, fn, noise: str, n: int) -> None:
    a = near_threshold(n, torch.float32, 0.8).view(1, n)
    with path_thresholds(**TWINS):
        x = fn(a, noise, 0.8, "sample", torch.Generator().manual_seed(1))
    with path_thresholds(twin_min_numel=1 << 40, **{k: v for k, v in TWINS.items() if k != "twin_min_numel"}):
        y = fn(a, noise, 0.8, "sample", torch.Generator().manual_seed(1))
    twin = _twins.lookup(x)
    assert twin is not None and twin.shape == x.shape and torch.equal(twin, sign8(x))
    assert torch.equal(x, y) and _twins.lookup(y) is None  # the same samples; none below the threshold


@pytest.mark.parametrize("function", [StochasticSign, BernoulliWeight])
def test_apply_returns_the_very_tensor_the_forward_returned(consumer: None, monkeypatch: pytest.MonkeyPatch,
                                                            function) -> None:
    attached = []
    real = _twins.attach
    monkeypatch.setattr(_twins, "attach", lambda t, twin: (attached.append(t), real(t, twin)))
    a = torch.randn(40, 50, requires_grad=True)
    with path_thresholds(**TWINS):
        x = function.apply(a, get_noise("logistic"), 1.0, "sample", None)
    assert len(attached) == 1 and attached[0] is x and x.grad_fn is not None
    assert _twins.lookup(x) is not None


def test_no_twin_for_another_tensor_or_a_changed_one(consumer: None) -> None:
    with path_thresholds(**TWINS):
        x = stochastic_sign(torch.randn(6, 500), "logistic", 1.0, "sample")
        z = stochastic_sign(torch.randn(6, 500), "uniform", 1.0, "sample")
    assert _twins.lookup(x) is not None and _twins.lookup(z) is not None
    for other in (x.clone(), x.detach(), x.view(6, 500), x.reshape(3000), x.contiguous().view_as(x), torch.ones_like(x),
                  x[:3], x.t()):
        assert other is not x and _twins.lookup(other) is None
    assert _twins.lookup(x.contiguous()) is not None  # contiguous() of a contiguous tensor is the tensor itself
    x.mul_(-1.0)  # in place: the twin is stale
    assert _twins.lookup(x) is None
    z[0, 0] = 1.0  # even a write of the value it holds
    assert _twins.lookup(z) is None
    w = torch.ones(6, 500)  # a tensor that never had one
    assert _twins.lookup(w) is None


@pytest.mark.parametrize("pos", [0, _twins.SPOT - 1, -_twins.SPOT, -1])
def test_a_write_past_the_version_counter_at_either_end_is_caught(consumer: None, pos: int) -> None:
    with path_thresholds(**TWINS):
        x = stochastic_sign(torch.randn(3000), "logistic", 1.0, "sample")
    assert _twins.lookup(x) is not None
    version = x._version
    x.data[pos] = -x.data[pos]  # .data: the version counter does not see it ...
    assert x._version == version
    assert _twins.lookup(x) is None  # ... the spot check does


def test_an_entry_dies_with_its_tensor(consumer: None) -> None:
    gc.collect()
    before = _twins.count()
    with path_thresholds(**TWINS):
        xs = [bernoulli_weight(torch.randn(2000), "logistic", 1.0, "sample") for _ in range(3)]
    assert _twins.count() == before + 3
    del xs
    gc.collect()
    assert _twins.count() == before


@pytest.mark.parametrize("noise", ["logistic", "uniform"])
def test_no_twin_for_a_call_with_nan(consumer: None, noise: str) -> None:
    a = torch.randn(3000)
    a[1234] = math.nan
    with path_thresholds(**TWINS):
        x = stochastic_sign(a, noise, 1.0, "sample")
    assert x[1234].isnan() and _twins.lookup(x) is None


def test_no_twin_without_a_consumer_below_the_threshold_in_inference_or_compiled(
        consumer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.randn(3000)
    with path_thresholds(**TWINS):
        assert _twins.lookup(stochastic_sign(a)) is not None
        with torch.inference_mode():
            assert _twins.lookup(stochastic_sign(a)) is None
        assert _twins.lookup(stochastic_sign(a, mode="mode")) is None
        assert _twins.lookup(stochastic_sign(a, "gaussian")) is None  # no one-pass kernel: no twin
        assert _twins.lookup(stochastic_sign(a.double())) is not None
        monkeypatch.setattr(sampling, "is_compiling", lambda: True)  # the compiled path: the custom operator
        assert _twins.lookup(stochastic_sign(a)) is None
        monkeypatch.setattr(sampling, "is_compiling", lambda: False)
        monkeypatch.setitem(_twins._CONSUMER, "wanted", lambda: False)
        assert _twins.lookup(stochastic_sign(a)) is None
        monkeypatch.setitem(_twins._CONSUMER, "wanted", None)
        assert _twins.lookup(stochastic_sign(a)) is None
    monkeypatch.setitem(_twins._CONSUMER, "wanted", lambda: True)
    with path_thresholds(**{**TWINS, "twin_min_numel": 3001}):
        assert _twins.lookup(stochastic_sign(a)) is None


def test_attach_refuses_a_twin_of_another_shape_or_dtype() -> None:
    x = torch.ones(4)
    strided = torch.ones(4, 2, dtype=torch.int8)[:, 0]
    for bad in (torch.ones(3, dtype=torch.int8), torch.ones(4, dtype=torch.uint8), strided):
        with pytest.raises(ValueError, match="contiguous int8"):
            _twins.attach(x, bad)
