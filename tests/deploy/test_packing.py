"""Bit packing: documented bit order, round trips, tails, odd shapes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stbin.deploy.packing import n_words, pack_bits, pack_sign, tail_is_clear, unpack_bits


def test_bit_order_is_documented_lsb_first_and_set_means_minus_one():
    v = np.ones(130, dtype=np.int8)
    v[0] = v[63] = v[64] = v[129] = -1
    w = pack_sign(v)
    assert w.dtype == np.uint64 and w.shape == (3,)
    assert int(w[0]) == (1 << 0) | (1 << 63)
    assert int(w[1]) == 1 << 0
    assert int(w[2]) == 1 << (129 - 128)


def test_sign_conventions_match_pytorch_mode():
    x = np.array([0.0, -0.0, 1e-30, -1e-30, np.nan, np.inf, -np.inf], dtype=np.float32)
    # sign(0) = +1 (also -0.0), NaN -> -1 as plus_minus_one(a >= 0) gives
    assert unpack_bits(pack_sign(x), len(x)).tolist() == [1, 1, 1, -1, -1, 1, -1]


@pytest.mark.parametrize("k", [1, 2, 63, 64, 65, 127, 128, 129, 200, 1000])
def test_round_trip_and_clear_tail(k):
    rng = np.random.default_rng(k)
    v = rng.choice(np.array([-1, 1], dtype=np.int8), size=(3, 5, k))
    w = pack_sign(v)
    assert w.shape == (3, 5, n_words(k))
    assert tail_is_clear(w, k)
    np.testing.assert_array_equal(unpack_bits(w, k), v)
    np.testing.assert_array_equal(pack_bits(v < 0), w)


@given(st.lists(st.integers(1, 7), min_size=0, max_size=2), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_round_trip_random_shapes(lead, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(lead) + (k,)).astype(np.float32)
    w = pack_sign(x)
    assert w.shape == tuple(lead) + (n_words(k),)
    np.testing.assert_array_equal(unpack_bits(w, k), np.where(x >= 0, 1, -1))


def test_dot_identity_on_packed_words():
    rng = np.random.default_rng(0)
    for k in (5, 64, 77, 300):
        x, y = rng.choice([-1, 1], size=k), rng.choice([-1, 1], size=k)
        pop = sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(pack_sign(x), pack_sign(y)))
        assert k - 2 * pop == int(x @ y)


def test_errors():
    with pytest.raises(ValueError, match="words per row"):
        unpack_bits(np.zeros((2, 3), np.uint64), 64)
    with pytest.raises(ValueError):
        pack_bits(np.array(True))
    with pytest.raises(ValueError):
        n_words(-1)
    assert not tail_is_clear(np.array([1 << 10], dtype=np.uint64), 5)
