"""The Philox sampling stream: known answers, exact samples on every path, statistics, seeding.

An independent Philox4x32-10 in plain Python integers (written from Salmon et al., SC 2011)
is the reference; the library's torch and numba implementations are compared with it
element by element. Statistical tolerances: 5 standard errors (a false alarm rate of
about 6e-7 per check).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stbin.estimators import bernoulli_weight, stochastic_sign
from stbin.estimators import random as srandom
from stbin.estimators import sampling
from stbin.estimators._common import path_thresholds
from stbin.estimators.noise import NOISES

M32 = 0xFFFFFFFF

# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def ref_philox(ctr, key, rounds=10):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def ref_halves(n, seed, start=0):
    """The stream's element layout, written from its definition: tile of 2048, half-major, then lane-major."""
    k0, k1, c2, c3 = (int(v) for v in seed)
    out, cache = [], {}
    for i in range(start, start + n):
        t, r = divmod(i, 2048)
        half, j = divmod(r, 1024)
        lane, pos = divmod(j, 256)
        b = 256 * t + pos
        if b not in cache:
            cache[b] = ref_philox((b & M32, b >> 32, c2, c3), (k0, k1))
        out.append((cache[b][lane] >> (16 * half)) & 0xFFFF)
    return out


def ref_uniforms(n, seed, start=0):
    """u_i = (h_i 2^32 + v_i) 2^-48 with the tie word v_i of counter (i mod 2^32, i // 2^32 + 2^31, c2, c3)."""
    k0, k1, c2, c3 = (int(v) for v in seed)
    out = []
    for i, h in zip(range(start, start + n), ref_halves(n, seed, start)):
        v = ref_philox((i & M32, (i >> 32) | (1 << 31), c2, c3), (k0, k1))[0]
        out.append(math.ldexp((h << 32) + v, -48))  # 48 bits: exact in float64
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answer_vectors(ctr, key, expected):
    assert ref_philox(ctr, key) == expected
    got = srandom.philox4x32(torch.tensor(ctr), torch.tensor(key))
    assert tuple(got.tolist()) == expected


def test_stream_layout_and_chunk_independence():
    seed = torch.tensor([0x01234567, 0x89ABCDEF, 0xDEADBEEF, 7])
    n = 2 * 2048 + 1300  # two full tiles and a partial one reaching into its second half
    halves = srandom.stream_halves(n, seed)
    assert halves.tolist() == ref_halves(n, seed)
    assert torch.equal(srandom.stream_uniforms(n, seed), ref_uniforms(n, seed))
    for k in (1, 255, 1024, 1500, 2048, 3000):
        assert torch.equal(srandom.stream_halves(n - k, seed, start=k), halves[k:])
        assert torch.equal(srandom.stream_uniforms(n - k, seed, start=k), srandom.stream_uniforms(n, seed)[k:])


def test_block_and_tie_counters_use_their_high_words():
    # a start beyond 2^32 blocks (and 2^32 elements) exercises both counters' second words
    seed = torch.tensor([1, 2, 3, 4])
    start = (1 << 32) * 2048 + 1023  # the last element of a first half, then two of the second half
    assert srandom.stream_halves(3, seed, start=start).tolist() == ref_halves(3, seed, start)
    assert torch.equal(srandom.stream_uniforms(3, seed, start=start), ref_uniforms(3, seed, start))
    idx = torch.tensor([0, 5, (1 << 33) + 9])
    exp = [ref_philox((i & M32, (i >> 32) | (1 << 31), 3, 4), (1, 2))[0] for i in idx.tolist()]
    assert srandom.tie_words(idx, seed).tolist() == exp
    assert sampling._kernel.tie_words_at(idx.numpy(), seed.numpy()).tolist() == exp


# -- the fused kernel: exact, on every path ------------------------------------------------

KERNEL_PATHS = {"serial": {}, "parallel": {"parallel_sampling_min_numel": 1}}


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_kernel_is_the_stream_compared_with_p(monkeypatch, two_threads, path, dtype, backend):
    if backend == "torch":
        monkeypatch.setattr(sampling, "_kernel", None)
    n = 3 * 2048 + 17
    gen = torch.Generator().manual_seed(5)
    seed = torch.tensor([3, 0xFFFFFFFF, 12345, 0x80000000])
    p = torch.rand(n, generator=gen, dtype=torch.float64)
    # a third of the elements are ties: p inside the interval of the element's half-word
    h = torch.tensor(ref_halves(n, seed), dtype=torch.float64)[::3]
    p[::3] = (h + torch.rand(h.numel(), generator=gen, dtype=torch.float64)) * 2.0 ** -16
    p = p.to(dtype)
    p[:4] = torch.tensor([0.0, 1.0, math.nan, 0.5])
    x = p.clone()
    with path_thresholds(**KERNEL_PATHS[path]):
        sampling.philox_sign_(x, seed)
    u = ref_uniforms(n, seed)
    expected = torch.where(u < p.double(), 1.0, -1.0).to(dtype)
    expected[2] = math.nan
    assert torch.equal(x.isnan(), expected.isnan())
    assert torch.equal(x.nan_to_num(7.0), expected.nan_to_num(7.0))


@pytest.mark.parametrize("path", KERNEL_PATHS)
def test_the_path_taken_is_the_one_forced(monkeypatch, two_threads, path):
    calls = []
    real = sampling._kernel.compare_inplace
    monkeypatch.setattr(sampling._kernel, "compare_inplace", lambda p, s, par, th=None: (calls.append(par), real(p, s, par, th)))
    with path_thresholds(**KERNEL_PATHS[path]):
        stochastic_sign(torch.zeros(2000), generator=torch.Generator().manual_seed(0))
    assert calls == [path == "parallel"]
    calls.clear()
    torch.set_num_threads(1)  # one thread: the serial kernel whatever the size (same numbers)
    with path_thresholds(**KERNEL_PATHS[path]):
        stochastic_sign(torch.zeros(2000), generator=torch.Generator().manual_seed(0))
    assert calls == [False]


@pytest.mark.parametrize("noise", NOISES.names())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [stochastic_sign, bernoulli_weight])
def test_samples_equal_the_reference_stream_against_the_closed_form(noise, dtype, fn):
    """x = +1 iff u < F(a/s), with u from the reference stream and F in float64 closed form.

    F is evaluated by the library in the compute dtype (float32 for half types), so the
    two may disagree only where u is within float32 rounding of F (|u - F| < 1e-6).
    """
    n, s = 2500, 0.7
    a = (torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5).to(dtype)
    g = torch.Generator().manual_seed(9)
    seed = srandom.draw_seed(torch.Generator().manual_seed(9))  # what the call will draw
    x = fn(a, noise, s, "sample", g)
    t = a.double() / s
    F = {"logistic": torch.sigmoid(t), "uniform": ((t + 1) / 2).clamp(0, 1),
         "gaussian": 0.5 * torch.erfc(-t / math.sqrt(2))}[noise]
    u = ref_uniforms(n, seed)
    expected = torch.where(u < F, 1.0, -1.0)
    near = (u - F).abs() < (1e-6 if dtype != torch.float64 else 1e-14)
    assert (x.double() == expected)[~near].all()
    assert near.sum() <= 2


# -- reproducibility: seeds, generators, resume, threads ------------------------------------

def test_seeding_generators_and_resume():
    a = torch.randn(40_000)
    torch.manual_seed(3)
    x1, x2 = stochastic_sign(a), stochastic_sign(a)
    torch.manual_seed(3)
    assert torch.equal(stochastic_sign(a), x1)  # torch.manual_seed reproduces the default stream
    state = torch.get_rng_state()  # what a checkpoint saves
    assert torch.equal(stochastic_sign(a), x2)
    torch.set_rng_state(state)  # resumed: the same numbers as the uninterrupted run
    assert torch.equal(stochastic_sign(a), x2)
    assert not torch.equal(x1, x2)  # the generator advances with every call
    g = torch.Generator().manual_seed(11)
    w1 = bernoulli_weight(a, generator=g)
    g2 = torch.Generator().manual_seed(11)
    assert torch.equal(bernoulli_weight(a, generator=g2), w1)
    assert not torch.equal(bernoulli_weight(a, generator=g), w1)


@pytest.mark.parametrize("cut", [2048, 40 * 2048, 128 * 2048])
def test_a_call_processed_in_chunks_gives_the_numbers_of_one_call(cut):
    """The kernel's ``start``: chunks of a call, each at its offset, reproduce the whole call."""
    p = torch.rand(300_000, generator=torch.Generator().manual_seed(2), dtype=torch.float64).float()
    seed = np.array([11, 12, 13, 14], dtype=np.int64)
    whole = p.clone()
    sampling._kernel.compare_inplace(whole.numpy(), seed, False)
    parts = p.clone()
    for lo in range(0, p.numel(), cut):
        sampling._kernel.compare_inplace(parts[lo:lo + cut].numpy(), seed, lo % 2 == 0, 2, start=lo)
    assert torch.equal(parts, whole)
    with pytest.raises(ValueError, match="multiple of 2048"):
        sampling._kernel.compare_inplace(parts[5:].numpy(), seed, False, start=5)


def test_identical_samples_for_one_and_two_threads():
    p = torch.rand(300_000, dtype=torch.float64).float()
    seed = torch.tensor([7, 8, 9, 10])
    out = []
    for threads in (1, 2):
        x = p.clone()
        sampling._kernel.compare_inplace(x.numpy(), seed.numpy(), True, threads)
        out.append(x)
    serial = p.clone()
    sampling._kernel.compare_inplace(serial.numpy(), seed.numpy(), False)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], serial)


# -- statistics --------------------------------------------------------------------------

def _corr_bound(n: int) -> float:
    return 5.0 / math.sqrt(n)  # 5 standard errors of a mean of n independent +-1 products


@pytest.mark.parametrize("lag", [1, 2, 3, 4, 255, 256, 257, 1024, 2048])
def test_no_correlation_between_neighbouring_elements(lag):
    # p = 1/2: x_i are +-1 with mean 0; lag 256 pairs lanes of one Philox block, 1024 the halves of one word
    n = 1 << 18
    x = stochastic_sign(torch.zeros(n), "logistic", 1.0, "sample", torch.Generator().manual_seed(lag)).double()
    assert abs(float(x.mean())) < _corr_bound(n)
    assert abs(float((x[:-lag] * x[lag:]).mean())) < _corr_bound(n - lag)


def test_no_correlation_between_channels_and_between_steps():
    C, HW = 64, 4096
    g = torch.Generator().manual_seed(0)
    w = torch.zeros(C, HW)
    x1 = bernoulli_weight(w, "logistic", 1.0, "sample", g).double()
    x2 = bernoulli_weight(w, "logistic", 1.0, "sample", g).double()  # the next step
    chan = (x1[:-1] * x1[1:]).mean(1)  # neighbouring channels, each over HW positions
    assert chan.abs().max() < _corr_bound(HW), chan.abs().max()
    assert abs(float((x1 * x2).mean())) < _corr_bound(C * HW)
    assert (x1 * x2).mean(1).abs().max() < _corr_bound(HW)


@pytest.mark.parametrize("noise", NOISES.names())
def test_frequencies_within_binomial_tolerance_of_F(noise):
    n, s = 20_000, 1.3
    values = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.05, 0.7, 2.5])
    x = stochastic_sign(values.repeat(n, 1), noise, s, "sample", torch.Generator().manual_seed(4))
    freq = (x > 0).double().mean(0)
    t = values.double() / s
    F = {"logistic": torch.sigmoid(t), "uniform": ((t + 1) / 2).clamp(0, 1),
         "gaussian": 0.5 * torch.erfc(-t / math.sqrt(2))}[noise]
    se = torch.sqrt(F * (1 - F) / n)
    assert ((freq - F).abs() <= 5 * se + 1e-12).all(), (freq, F)


@pytest.mark.parametrize("F", [1e-6, 1e-4, 1 - 1e-6])
def test_probabilities_finer_than_the_half_word_are_kept(F):
    """``P(+1) = ceil(2^48 F) / 2^48``: a 16-bit comparison alone would give 2^-16 (64 hits expected here) for F = 1e-6.

    2^22 samples of uniform noise with ``F(a) = (a + 1) / 2`` exactly ``F``; counts within 5 Poisson/binomial
    standard errors (at least 6 counts of slack for the rare side).
    """
    n = 1 << 22
    a = torch.full((n,), 2 * F - 1, dtype=torch.float64)
    x = bernoulli_weight(a, "uniform", 1.0, "sample", torch.Generator().manual_seed(21))
    p = float(((a + 1) / 2)[0])  # F as the kernel evaluates it
    rare = min(p, 1 - p) * n
    count = int((x > 0).sum()) if p < 0.5 else int((x < 0).sum())
    assert abs(count - rare) <= 5 * math.sqrt(rare) + 6, (count, rare)
