"""The f64x8 lanes of the screen's row set-up (stbin.deploy._simd_f64): masked tails read nothing past the row,
the eight-lane sums stay within the rounding that the screen's factor ``up`` allows, NaN and inf show in the sum."""

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from stbin.deploy._simd_f64 import d8_absmax, d8_add, d8_load_n, d8_max, d8_mul, d8_sub, d8_sum, d8_zero  # noqa: E402


@njit(cache=False)
def _row_stats(x, lo, k, c):  # type: ignore[no-untyped-def]
    am = ss = dd = d8_zero()
    for kk in range(0, k, 8):
        v = d8_load_n(x, lo + kk, k - kk)
        am = d8_absmax(am, v)
        ss = d8_add(ss, d8_mul(v, v))
        dd = d8_add(dd, d8_sub(v, d8_mul(v, c)))  # as the screen's e = x - sx p: +0.0 on the tail lanes
    return d8_max(am), d8_sum(ss), d8_sum(dd)


@pytest.mark.parametrize("k", [1, 7, 8, 9, 63, 784])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_and_max_of_a_row_inside_a_larger_array(k, dtype):
    """A row in the middle of an array whose neighbours are NaN: the masked tail never reads them; the max is
    exact, the sum within (K - 1) u_64 relative of the exact one (far inside the screen's 2^-30)."""
    rng = np.random.default_rng(k)
    row = (rng.standard_normal(k) * 10.0 ** rng.integers(-3, 4, size=k)).astype(dtype)
    x = np.full(k + 40, np.nan, dtype)
    x[16:16 + k] = row
    am, ss, dd = _row_stats(x, 16, k, 0.5)
    r64 = row.astype(np.float64)
    assert am == np.abs(r64).max()
    exact = sum(float(v) * float(v) for v in r64)  # a reference sum; both within (K - 1) u of the true value
    assert abs(ss - exact) <= 2 * k * 2.0 ** -53 * exact
    ref_d = float(np.sum(r64 - r64 * 0.5))
    assert abs(dd - ref_d) <= 4 * k * 2.0 ** -53 * float(np.sum(np.abs(r64)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_show_in_the_sum(bad):
    x = np.ones(21, np.float32)
    x[13] = bad
    am, ss, _ = _row_stats(x, 0, 21, 0.0)
    assert not np.isfinite(ss)
    if not np.isnan(bad):
        assert am == np.inf and ss == np.inf
