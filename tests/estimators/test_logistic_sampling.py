"""The one-pass logistic sampler: bit for bit the two-pass stream (torch sigmoid, then the comparison kernel).

The reference is the two-pass path itself (``F(a/s)`` by torch over the whole tensor, one
thread, then :func:`stbin.estimators._philox_numba.compare_inplace`), which the tests of
``test_random.py`` tie to the published Philox vectors. Inputs are built so that the
kernel's undecided band is hit: values whose ``sigmoid`` sits one ulp from ``u``, signed
zeros, NaN, infinities, subnormals, huge magnitudes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stbin.estimators import _logistic_sampling as fast
from stbin.estimators import _logistic_sampling_numba as fastk
from stbin.estimators import bernoulli_weight, sampling, stochastic_sign
from stbin.estimators import random as srandom
from stbin.estimators._common import path_thresholds

SEED = torch.tensor([0x01234567, 0x89ABCDEF, 0xDEADBEEF, 7])
FAST = {"elementwise_kernel_min_numel": 1}
SLOW = {"elementwise_kernel_min_numel": 1 << 40}


def two_pass(a: torch.Tensor, scale: float, seed: torch.Tensor) -> torch.Tensor:
    """The stream's rule evaluated the two-pass way, with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = a.double() if a.dtype == torch.float64 else a.float()
        p = torch.sigmoid(t / scale if scale != 1.0 else t).contiguous()
    finally:
        torch.set_num_threads(threads)
    sampling._kernel.compare_inplace(p.view(-1).numpy(), seed.numpy(), False)
    return p


def one_pass(a: torch.Tensor, scale: float, seed: torch.Tensor, parallel: bool = False) -> torch.Tensor:
    out = torch.empty_like(a)

    def redo(lo, hi):  # the two-pass way on a work item (the caller's fallback)
        out[lo:hi] = two_pass(a, scale, seed)[lo:hi]

    fast.sample_into(out, a, scale, seed, parallel, 2, redo)
    return out


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0))


def edge_inputs(n: int, dtype: torch.dtype, scale: float, seed: torch.Tensor) -> torch.Tensor:
    """``a`` with ``sigmoid(a/s)`` within a few ulp of the element's ``u`` on a third of the elements, and the specials."""
    g = torch.Generator().manual_seed(n)
    u = srandom.stream_uniforms(n, seed)
    u = u.clamp(1e-12, 1 - 1e-12)
    a = (torch.log(u) - torch.log1p(-u)) * scale  # sigmoid(a / s) ~ u
    a = a.to(dtype)
    ulps = torch.randint(-3, 4, (n,), generator=g)
    for _ in range(3):  # step a few ulp up or down
        up = ulps > 0
        a = torch.where(up, torch.nextafter(a, torch.tensor(math.inf, dtype=dtype)), a)
        down = ulps < 0
        a = torch.where(down, torch.nextafter(a, torch.tensor(-math.inf, dtype=dtype)), a)
        ulps = ulps - up.long() + down.long()
    far = torch.rand(n, generator=g) < 0.66
    a = torch.where(far, (torch.randn(n, generator=g, dtype=torch.float64) * 4).to(dtype), a)
    tiny = torch.finfo(dtype).tiny
    specials = torch.tensor([0.0, -0.0, math.nan, math.inf, -math.inf, tiny, -tiny, tiny / 4, -tiny / 4,
                             torch.finfo(dtype).max, -torch.finfo(dtype).max, 88.0, -88.0, 40.0, -40.0,
                             17.0, -17.0, 1e-30, -1e-30], dtype=dtype)
    pos = torch.randperm(n, generator=g)[: 40 * specials.numel()]
    a[pos] = specials.repeat(40)
    return a


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("parallel", [False, True])
def test_one_pass_equals_the_two_pass_stream_near_every_threshold(dtype, scale, parallel):
    n = 5 * fastk.ITEM_ELEMENTS + 1000 + 37  # five work items, a partial one, a tail not a multiple of 64
    a = edge_inputs(n, dtype, scale, SEED)
    got = one_pass(a, scale, SEED, parallel)
    assert same(got, two_pass(a, scale, SEED))
    assert torch.isnan(got).sum() == 40 and (got.abs() == 1).sum() == n - 40


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_undecided_elements_are_rare_and_only_near_the_threshold(dtype):
    n = 1 << 18
    a = edge_inputs(n, dtype, 0.7, SEED)
    out = torch.empty_like(a)
    idx, words, counts, _ = fastk.decide(a.numpy(), out.numpy(), 0.7, SEED.numpy(), False, cap=fastk.ITEM_ELEMENTS)
    rows = np.arange(idx.shape[1]) < counts[:, None]
    und = torch.from_numpy(idx[rows])
    assert torch.equal(torch.nonzero(out == 0).view(-1), und.sort().values)
    assert torch.equal(torch.from_numpy(words[rows].astype(np.int64)), srandom.stream_halves(n, SEED)[und])
    # every undecided element has u within 3.33 * 2^-16 of p (the module docstring's bound); every decided one
    # is exact
    u = srandom.stream_uniforms(n, SEED)
    p = torch.sigmoid(a.double() / 0.7)
    assert ((u[und] - p[und]).abs() < 3.33 * 2.0 ** -16).all()
    assert und.numel() > 100  # the inputs put a third of the elements within a few ulp of u
    decided = (out != 0) & ~out.isnan()
    assert same(out[decided], two_pass(a, 0.7, SEED)[decided])


def test_undecided_band_is_narrow_on_ordinary_inputs():
    """About 2 * 2^-16 of the elements of generic inputs are left to the fix-up."""
    n = 1 << 20
    a = torch.randn(n, generator=torch.Generator().manual_seed(3)) * 3
    out = torch.empty_like(a)
    _, _, counts, _ = fastk.decide(a.numpy(), out.numpy(), 1.0, SEED.numpy(), False)
    assert counts.sum() < 8 * n * 2.0 ** -15  # expected about n 2^-15 = 32, at most
    assert same(one_pass(a, 1.0, SEED), two_pass(a, 1.0, SEED))


def test_exp_neg_is_within_its_stated_error():
    from numba import njit

    @njit(fastmath={"contract"})
    def run(m, out):
        for i in range(m.size):
            out[i] = fastk.exp_neg(m[i])

    m = torch.cat([torch.linspace(0, 40, 400_001, dtype=torch.float32), torch.tensor([0.0, 1e-30, 0.34657, 40.0])])
    got = torch.empty_like(m)
    run(m.numpy(), got.numpy())
    ref = torch.exp(-m.double())
    assert ((got.double() - ref).abs() / ref).max() < 2.0 ** -18


def test_overflowing_rows_are_redone_the_two_pass_way():
    """An item with more undecided elements than its row holds is recomputed by ``redo``."""
    n = 3 * fastk.ITEM_ELEMENTS + 5
    a = edge_inputs(n, torch.float32, 1.0, SEED)
    out = torch.empty_like(a)
    calls = []

    def redo(lo, hi):
        calls.append((lo, hi))
        out[lo:hi] = two_pass(a, 1.0, SEED)[lo:hi]

    real = fastk.decide
    fast_decide = lambda *args, **kw: real(*args, **{**kw, "cap": 2})  # noqa: E731
    try:
        fastk.decide = fast_decide
        fast.sample_into(out, a, 1.0, SEED, False, 1, redo)
    finally:
        fastk.decide = real
    assert calls == [(k * fastk.ITEM_ELEMENTS, min(n, (k + 1) * fastk.ITEM_ELEMENTS)) for k in range(4)]
    assert same(out, two_pass(a, 1.0, SEED))


@pytest.mark.parametrize("cut", [2048, 32 * 2048, 3 * 32 * 2048])
def test_a_call_in_chunks_gives_the_decisions_of_one_call(cut):
    n = 300_000
    a = torch.randn(n, generator=torch.Generator().manual_seed(2))
    seed = SEED.numpy()
    whole = torch.empty_like(a)
    fastk.decide(a.numpy(), whole.numpy(), 0.5, seed, False)
    parts = torch.empty_like(a)
    for lo in range(0, n, cut):
        fastk.decide(a[lo:lo + cut].numpy(), parts[lo:lo + cut].numpy(), 0.5, seed, lo % 2 == 0, 2, start=lo)
    assert torch.equal(parts, whole)
    with pytest.raises(ValueError, match="multiple of 2048"):
        fastk.decide(a[5:].numpy(), parts[5:].numpy(), 0.5, seed, False, start=5)
    with pytest.raises(ValueError, match="one size and dtype"):
        fastk.decide(a.numpy(), parts.double().numpy(), 0.5, seed, False)


@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_public_calls_give_the_numbers_of_the_two_pass_path(fn, dtype, threads):
    a = edge_inputs(70_007, dtype, 0.8, SEED).view(7, 10_001)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with path_thresholds(parallel_sampling_min_numel=1, **FAST):
            x = fn(a, "logistic", 0.8, "sample", torch.Generator().manual_seed(1))
        torch.set_num_threads(1)
        with path_thresholds(**SLOW):
            y = fn(a, "logistic", 0.8, "sample", torch.Generator().manual_seed(1))
    finally:
        torch.set_num_threads(saved)
    assert same(x, y) and x.dtype == dtype and x.shape == a.shape


def test_the_path_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    usable, real = sampling.ONE_PASS[torch.sigmoid]
    monkeypatch.setitem(sampling.ONE_PASS, torch.sigmoid,
                        (usable, lambda *args: (calls.append(args[1].dtype), real(*args))))
    g = torch.Generator().manual_seed(0)
    with path_thresholds(**FAST):
        stochastic_sign(torch.zeros(3000), "logistic", 1.0, "sample", g)
        stochastic_sign(torch.zeros(3000, dtype=torch.float64), "logistic", 1.0, "sample", g)
        stochastic_sign(torch.zeros(3000, dtype=torch.bfloat16), "logistic", 1.0, "sample", g)  # two passes
        stochastic_sign(torch.zeros(3000), "gaussian", 1.0, "sample", g)  # no one-pass kernel: two passes
        stochastic_sign(torch.zeros(3000), "logistic", 1e-35, "sample", g)  # 1/s not a float32: two passes
        stochastic_sign(torch.zeros(3000, 2).t(), "logistic", 1.0, "sample", g)  # made contiguous first
    assert calls == [torch.float32, torch.float64, torch.float32]
    calls.clear()
    stochastic_sign(torch.zeros(3000), "logistic", 1.0, "sample", g)  # below the threshold: two passes
    assert calls == []
    monkeypatch.setattr(sampling, "_kernel", None)  # no numba: the pure-torch stream
    with path_thresholds(**FAST):
        stochastic_sign(torch.zeros(3000), "logistic", 1.0, "sample", g)
    assert calls == []


def test_tiny_scale_and_extreme_values_fall_back_or_agree():
    a = torch.tensor([0.0, 1e-30, -1e-30, 3e38, -3e38, math.nan] * 3000)
    for s in (1e-35, 1e-20, 1e20, 1e35):
        with path_thresholds(**FAST):
            x = stochastic_sign(a, "logistic", s, "sample", torch.Generator().manual_seed(2))
        with path_thresholds(**SLOW):
            y = stochastic_sign(a, "logistic", s, "sample", torch.Generator().manual_seed(2))
        assert same(x, y), s


def _straddling_input(u: float, path: str) -> float | None:
    """A float32 ``a`` with ``sigmoid(a)`` on different sides of ``u`` in torch's vector and scalar formulas.

    Vector formula: ``a`` inside a tensor of 64 elements; scalar formula: a tensor of one
    element (the tail of torch's vectorised loop). ``path`` names the formula whose
    sample is +1. None if no such ``a`` within 64 ulp of ``logit(u)``.
    """
    a0 = torch.tensor([math.log(u) - math.log1p(-u)], dtype=torch.float32)
    bits = a0.view(torch.int32) + torch.arange(-64, 65, dtype=torch.int32) * (1 if a0.item() >= 0 else -1)
    cand = bits.view(torch.float32)
    vec = torch.sigmoid(torch.cat([cand, torch.zeros(64 - cand.numel() % 64)]))[: cand.numel()].double()
    sca = torch.tensor([torch.sigmoid(c.view(1)).item() for c in cand], dtype=torch.float64)
    plus = (u < vec) if path == "vector" else (u < sca)
    other = (u < sca) if path == "vector" else (u < vec)
    hit = torch.nonzero(plus & ~other).view(-1)
    return float(cand[hit[0]]) if hit.numel() else None


def test_the_fix_up_follows_torchs_vector_and_scalar_formulas_by_position():
    """Elements whose sample differs between torch's vector and scalar sigmoid get the two-pass path's one.

    torch's loop takes ``2V`` elements a step (``2V`` = 8, 16 or 32 float32 lanes: SSE, AVX2,
    AVX-512) and the scalar formula for the last ``n mod 2V``; with ``n mod 64 = 40`` that is
    the last 8 elements on every one of them. Inputs are planted where the two formulas put
    ``sigmoid(a)`` on different sides of the element's ``u`` (a seed is searched for whose
    tail allows it), so a fix-up with the wrong formula at a position fails here.
    """
    n = 2 * fastk.ITEM_ELEMENTS + 40
    planted: dict[str, list[int]] = {"vector": [], "scalar": []}
    for k in range(200):
        seed = torch.tensor([k, 0x5EED, 1, 2])
        words = srandom.stream_uniforms(n, seed)
        a = torch.randn(n, generator=torch.Generator().manual_seed(k)) * 3
        planted = {"vector": [], "scalar": []}
        for path, positions in (("scalar", range(n - 8, n)), ("vector", range(0, n - 8, 997))):
            for i in positions:
                x = _straddling_input(float(words[i]), path)
                if x is not None:
                    a[i] = x
                    planted[path].append(i)
        if planted["scalar"]:
            break
    assert len(planted["scalar"]) >= 1 and len(planted["vector"]) >= 3, planted
    reference = two_pass(a, 1.0, seed)
    for path, pos in planted.items():
        assert (reference[pos] == 1).all(), path  # the two-pass path took that formula there
    assert same(one_pass(a, 1.0, seed), reference)
    assert same(one_pass(a, 1.0, seed, parallel=True), reference)


@pytest.mark.parametrize("bad, msg", [
    (dict(a=np.zeros((2, 1024), np.float32)), "1-D contiguous"),
    (dict(a=np.zeros(2048, np.float32)[::2]), "1-D contiguous"),
    (dict(a=np.zeros(1024, np.float16)), "float32/float64"),
    (dict(out=np.zeros(1024, np.float64)), "one size and dtype"),
    (dict(out=np.zeros(1023, np.float32)), "one size and dtype"),
    (dict(seed=np.zeros(3, np.int64)), "4 int64 seed words"),
    (dict(seed=np.zeros(4, np.int32)), "4 int64 seed words"),
    (dict(start=1024), "multiple of 2048"),
    (dict(start=-2048), "multiple of 2048"),
])
def test_stream_kernels_refuse_bad_arguments_before_running(bad, msg):
    """Both one-pass kernels' entry points check their arrays, seed and offset (a kernel reads raw memory)."""
    from stbin.estimators import _logistic_sampling_numba as lg, _uniform_sampling_numba as un

    args = dict(a=np.zeros(1024, np.float32), out=np.zeros(1024, np.float32), seed=np.zeros(4, np.int64), start=0)
    args.update(bad)
    with pytest.raises(ValueError, match=msg):
        lg.decide(args["a"], args["out"], 1.0, args["seed"], False, start=args["start"])
    with pytest.raises(ValueError, match=msg):
        un.sample_into(args["a"], args["out"], 1.0, args["seed"], False, start=args["start"])
