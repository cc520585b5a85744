"""Each kernel equals the dense ±1 computation (matmul, conv, max pool) on random shapes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stbin.deploy import dense_kernels, kernels
from stbin.deploy.packing import n_words, pack_bits, pack_sign, tail_is_clear, unpack_bits

SHAPES = [(1, 1, 1), (3, 63, 5), (17, 64, 64), (5, 65, 130), (33, 200, 71), (2, 1000, 3)]


def pm1(rng, *shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


def test_popcount_intrinsic():
    from numba import njit

    @njit
    def pc(a):
        out = np.empty(a.shape[0], np.int64)
        for i in range(a.shape[0]):
            out[i] = kernels.popcount64(a[i])
        return out

    a = np.array([0, 1, 2**63, 2**64 - 1, 0x5555555555555555, 12345678901234567], dtype=np.uint64)
    assert pc(a).tolist() == [bin(int(v)).count("1") for v in a]


@pytest.mark.parametrize("n, k, m", SHAPES)
def test_bgemm_equals_dense(n, k, m):
    rng = np.random.default_rng(n * 1000 + k)
    x, w = pm1(rng, n, k), pm1(rng, m, k)
    out = np.empty((n, m), np.int32)
    kernels.bgemm(pack_sign(x), pack_sign(w), k, out)
    np.testing.assert_array_equal(out, x.astype(np.int32) @ w.T.astype(np.int32))


@pytest.mark.parametrize("n, k, m", SHAPES)
def test_bgemm_sign_equals_dense_threshold(n, k, m):
    rng = np.random.default_rng(n + k + m)
    x, w = pm1(rng, n, k), pm1(rng, m, k)
    S = rng.choice(np.array([-1, 1], np.int32), size=m)
    T = rng.integers(-k - 1, k + 2, size=m).astype(np.int32)
    out = np.empty((n, n_words(m)), np.uint64)
    kernels.bgemm_sign(pack_sign(x), pack_sign(w), k, S, T, out)
    dot = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(unpack_bits(out, m), np.where(S * dot >= T, 1, -1))
    assert tail_is_clear(out, m)


# the word-major dense loops' blocks: 4 rows x 16 outputs, the remaining rows (1-3), outputs in blocks of
# 16, one of 8, then one by one (m = 8, 24, 27, 71)
DENSE_SHAPES = SHAPES + [(4, 64, 16), (7, 130, 24), (9, 512, 27), (1, 512, 512)]


@pytest.mark.parametrize("n, k, m", DENSE_SHAPES)
@pytest.mark.parametrize("serial", [True, False])
def test_word_major_dense_equals_dense(n, k, m, serial):
    """bdense_dot / bdense_sign (weights W.T, vpopcntq on eight outputs) equal the dense ±1 product and its
    thresholds exactly, thresholds one step either side of the dot included; serial twin and parallel loop."""
    from stbin.deploy import _dense_loops as D

    rng = np.random.default_rng(7 * n + k + m)
    x, w = pm1(rng, n, k), pm1(rng, m, k)
    dot = x.astype(np.int64) @ w.T.astype(np.int64)
    X, Wt = pack_sign(x), np.ascontiguousarray(pack_sign(w).T)
    acc = np.empty((n, m), np.uint64)
    out = np.empty((n, m), np.int32)
    (D.bdense_dot_serial if serial else D.bdense_dot)(X, Wt, k, acc, out)
    np.testing.assert_array_equal(out, dot)
    S = rng.choice(np.array([-1, 1], np.int32), size=m)
    T = (S * dot[0] + rng.integers(-1, 2, size=m)).astype(np.int32)  # at, one above, one below row 0's value
    bits = np.empty((n, n_words(m)), np.uint64)
    (D.bdense_sign_serial if serial else D.bdense_sign)(X, Wt, k, S, T, acc, bits)
    np.testing.assert_array_equal(unpack_bits(bits, m), np.where(S * dot >= T, 1, -1))
    assert tail_is_clear(bits, m)
    checked = np.empty_like(bits)
    dense_kernels.bdense_sign(X, Wt, k, S, T, checked)
    np.testing.assert_array_equal(checked, bits)


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (3, 63, 10), (5, 130, 17), (9, 512, 10), (4, 65, 16), (8, 200, 33)])
def test_bits_dense_is_unpack_then_dense_bit_for_bit(n, k, m):
    """The fused last layer on packed inputs does the operations of unpack_float + float_dense in their order:
    equal bit for bit (weights of mixed magnitudes, so that the order of the sum shows), and close to float64."""
    from stbin.deploy import _dense_loops as D

    rng = np.random.default_rng(n + k + m)
    x = pm1(rng, n, k)
    wt = (rng.standard_normal((k, m)) * 10.0 ** rng.integers(-4, 5, size=(k, m))).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    X = pack_sign(x)
    xf = np.empty((n, k), np.float32)
    kernels.unpack_float(X, k, xf)
    ref = np.empty((n, m), np.float32)
    kernels.float_dense(xf, wt, b, ref)
    wpm = dense_kernels.signed_weights(wt)
    for fn in (D.bits_dense_serial, D.bits_dense):
        out = np.full((n, m), np.nan, np.float32)
        fn(X, k, wpm, b, out)
        assert out.tobytes() == ref.tobytes()
    out = np.empty((n, m), np.float32)
    dense_kernels.bits_dense(X, k, wpm, b, out)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out, x @ wt.astype(np.float64) + b, rtol=1e-4, atol=1e-3 * np.abs(wt).sum(0).max())


def test_bits_dense_non_finite_weights_bit_for_bit():
    """NaN (both signs, a payload, a signalling one) and infinite weights: the products with both signs made once
    (signed_weights) are those float_dense forms, so every output's bytes equal unpack_float + float_dense's."""
    from stbin.deploy import _dense_loops as D

    rng = np.random.default_rng(7)
    n, k, m = 6, 100, 21
    wt = rng.standard_normal((k, m)).astype(np.float32)
    bits = wt.view(np.uint32)
    bits[3, :5] = [0x7FC00001, 0xFFC00002, 0x7F800001, 0x7F800000, 0xFF800000]  # NaNs (one signalling), +-inf
    bits[50, 4:7] = [0x7F800000, 0x7F800000, 0x00000001]  # inf + inf; -inf + inf -> NaN in output 4; a subnormal
    b = rng.standard_normal(m).astype(np.float32)
    X = pack_sign(pm1(rng, n, k))
    xf = np.empty((n, k), np.float32)
    kernels.unpack_float(X, k, xf)
    ref = np.empty((n, m), np.float32)
    kernels.float_dense(xf, wt, b, ref)
    for fn in (D.bits_dense_serial, D.bits_dense):
        out = np.empty((n, m), np.float32)
        fn(X, k, dense_kernels.signed_weights(wt), b, out)
        assert out.tobytes() == ref.tobytes()
    assert np.isnan(ref[:, :3]).all() and not np.isfinite(ref[:, 3]).any()


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (2, 63, 10), (3, 130, 27), (1, 784, 512)])
def test_bitserial_dot_is_the_exact_integer_product(n, k, m):
    """8-bit inputs x ±1 weights by bit-planes: exactly sum_k q_k w_k, the extreme inputs 0 and 255 included."""
    from stbin.deploy import _dense_loops as D

    rng = np.random.default_rng(n + k + m)
    q = rng.integers(0, 256, size=(n, k)).astype(np.uint8)
    q[0, 0], q[-1, -1] = 255, 0
    w = pm1(rng, m, k)
    Wt = np.ascontiguousarray(pack_sign(w).T)
    neg = (w < 0).sum(1).astype(np.int64)
    for fn in (D.bitserial_dot_serial, D.bitserial_dot):
        out = np.zeros((n, m), np.int64)
        fn(q, Wt, neg, np.empty((8 * n, n_words(k)), np.uint64), np.empty((8 * n, m), np.uint64), out)
        np.testing.assert_array_equal(out, q.astype(np.int64) @ w.T.astype(np.int64))


@pytest.mark.parametrize("n, c, h, w, oc, ks, stride, pad, dil", [
    (2, 3, 7, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 64, 5, 5, 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    (3, 70, 6, 7, 66, (2, 3), (1, 2), (0, 2), (2, 1)),
    (1, 1, 4, 4, 1, (1, 1), (1, 1), (0, 0), (1, 1)),
    # the channel blocks of the conv loops: 16 (one word per pixel, ResNet-20's case), 16 + 8 + 3 over three
    # words, 16 + 16 + 8 with padding wider than the kernel's reach (pixels with no valid tap at all)
    (2, 16, 9, 8, 16, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 130, 5, 6, 27, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 40, 5, 5, 40, (3, 3), (2, 1), (4, 3), (2, 2)),
    # blocks of 4 adjacent pixels (one word per pixel, OC % 16 == 0) with a horizontal stride and dilation
    (2, 30, 11, 17, 32, (3, 3), (1, 2), (1, 1), (1, 2)),
    # three horizontal taps packed in one word (at most 21 channels, 3 wide, stride 1 and padding 1 across): widths
    # 1 and 2 (both borders in one or two pixels), a vertical stride and dilation, 48 outputs
    (1, 21, 6, 1, 32, (3, 3), (2, 1), (1, 1), (2, 1)),
    (2, 7, 5, 2, 16, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 16, 4, 9, 48, (3, 3), (1, 1), (2, 1), (1, 1)),
])
def test_bconv2d_equals_torch_conv_with_zero_padding(n, c, h, w, oc, ks, stride, pad, dil):
    rng = np.random.default_rng(c * oc)
    x, wt = pm1(rng, n, c, h, w), pm1(rng, oc, c, *ks)
    ref = F.conv2d(torch.from_numpy(x).float(), torch.from_numpy(wt).float(), None, stride, pad, dil)
    ref = ref.permute(0, 2, 3, 1).numpy().astype(np.int32)
    xp = pack_sign(x.transpose(0, 2, 3, 1))
    wp = np.ascontiguousarray(pack_sign(wt.transpose(0, 2, 3, 1)).transpose(1, 2, 3, 0))  # (KH, KW, CW, OC)
    out = np.empty(ref.shape, np.int32)
    kernels.bconv2d(xp, wp, c, *stride, *pad, *dil, out)
    np.testing.assert_array_equal(out, ref)
    S = rng.choice(np.array([-1, 1], np.int32), size=oc)
    T = rng.integers(-5, 6, size=oc).astype(np.int32)
    ob = np.empty(ref.shape[:3] + (n_words(oc),), np.uint64)
    kernels.bconv2d_sign(xp, wp, c, *stride, *pad, *dil, S, T, ob)
    np.testing.assert_array_equal(unpack_bits(ob, oc), np.where(S * ref >= T, 1, -1))
    scale, bias = rng.standard_normal(oc).astype(np.float32), rng.standard_normal(oc).astype(np.float32)
    of = np.empty((n, oc) + ref.shape[1:3], np.float32)
    kernels.bconv2d_float(xp, wp, c, *stride, *pad, *dil, scale, bias, of)
    np.testing.assert_array_equal(of, ref.transpose(0, 3, 1, 2).astype(np.float32) * scale[:, None, None]
                                  + bias[:, None, None])


def test_bconv2d_refuses_non_contiguous_operands():
    """The conv loops index X and Wt by flat offsets: a strided view must be refused, not misread."""
    X = np.zeros((1, 4, 8, 1), np.uint64)[:, :, ::2]
    Wt = np.zeros((3, 3, 1, 16), np.uint64)
    out = np.empty((1, 4, 4, 16), np.int32)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.bconv2d(X, Wt, 16, 1, 1, 1, 1, 1, 1, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.bconv2d(np.ascontiguousarray(X), np.zeros((3, 3, 1, 32), np.uint64)[..., ::2], 16, 1, 1, 1, 1, 1, 1,
                        out)


@pytest.mark.parametrize("ks, stride, pad", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1)), ((3, 2), (2, 1), (1, 0))])
def test_bmaxpool_equals_torch(ks, stride, pad):
    rng = np.random.default_rng(0)
    x = pm1(rng, 2, 70, 7, 6).astype(np.float32)
    ref = F.max_pool2d(torch.from_numpy(x), ks, stride, pad).permute(0, 2, 3, 1).numpy()
    out = np.empty(ref.shape[:3] + (n_words(70),), np.uint64)
    xp = pack_sign(x.transpose(0, 2, 3, 1))
    kernels.bmaxpool2d(xp, np.full(2, ~np.uint64(0), np.uint64), *ks, *stride, *pad, 1, 1, out)
    np.testing.assert_array_equal(unpack_bits(out, 70), ref)
    # channels whose mask bit is clear take the min instead (all taps must be +1)
    anyc = rng.random(70) < 0.5
    mask = pack_bits(anyc)  # bit set = "any"
    kernels.bmaxpool2d(xp, mask, *ks, *stride, *pad, 1, 1, out)
    mn = -F.max_pool2d(-torch.from_numpy(x), ks, stride, pad).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(unpack_bits(out, 70), np.where(anyc, ref, mn))


def test_float_sign_pack():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((9, 100)).astype(np.float32)
    y[0, :4] = [0.0, -0.0, np.nan, np.inf]
    S = rng.choice(np.array([-1.0, 1.0], np.float32), size=100)
    T = rng.standard_normal(100).astype(np.float32)
    T[:3] = [-np.inf, np.nan, 0.0]
    out = np.empty((9, 2), np.uint64)
    kernels.float_sign_pack(y, S, T, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(unpack_bits(out, 100), np.where(S * y >= T, 1, -1))


def test_popcount_peak_runs():
    x = np.zeros((2, 5, 8), np.uint64)
    x[:, 1] = 1  # weight row 1 differs from the zero input in one bit per word
    want = 2 * sum(8 * (4 * bin(r).count("1") + (bin(r ^ 1).count("1") - bin(r).count("1"))) for r in range(3))
    assert int(kernels.popcount_peak(x, 3)) == want


def test_float_sign_pack_nchw():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((2, 70, 3, 5)).astype(np.float32)
    S = rng.choice(np.array([-1.0, 1.0], np.float32), size=70)
    T = rng.standard_normal(70).astype(np.float32)
    out = np.empty((2, 3, 5, 2), np.uint64)
    kernels.float_sign_pack_nchw(y, S, T, out)
    want = np.where(S[None, :, None, None] * y >= T[None, :, None, None], 1, -1).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(unpack_bits(out, 70), want)


@pytest.mark.parametrize("signs", [(-1, 1), (-3, -1, 0, 1, 2, 7), (1,), (-1,), (0, 1)])
@pytest.mark.parametrize("serial", [True, False])
def test_fused_thresholds_for_any_integer_scale(signs, serial):
    """bdense_sign and bconv2d_sign decide ``S * dot >= T`` exactly for every int32 ``S``: the multiply-free path
    (taken when every ``S`` is +1 or -1, as the engine's folding writes them) and the general one (any other
    value in ``S``, e.g. from a file written elsewhere) give the reference bits, thresholds at and next to the dot."""
    from stbin.deploy import _conv_loops as C
    from stbin.deploy import _dense_loops as D

    rng = np.random.default_rng(len(signs) + 10 * serial)
    n, k, m = 6, 130, 40
    x, w = pm1(rng, n, k), pm1(rng, m, k)
    dot = x.astype(np.int64) @ w.T.astype(np.int64)
    S = rng.choice(np.array(signs, np.int32), size=m)
    T = (S * dot[0] + rng.integers(-1, 2, size=m)).astype(np.int32)
    X, Wt = pack_sign(x), np.ascontiguousarray(pack_sign(w).T)
    bits = np.empty((n, n_words(m)), np.uint64)
    (D.bdense_sign_serial if serial else D.bdense_sign)(X, Wt, k, S, T, np.empty((n, m), np.uint64), bits)
    np.testing.assert_array_equal(unpack_bits(bits, m), np.where(S.astype(np.int64) * dot >= T, 1, -1))

    c, oc = 16, 32
    xi, wi = pm1(rng, 2, c, 6, 6), pm1(rng, oc, c, 3, 3)
    ref = F.conv2d(torch.from_numpy(xi).float(), torch.from_numpy(wi).float(), None, 1, 1)
    ref = ref.permute(0, 2, 3, 1).numpy().astype(np.int64)
    xp = pack_sign(xi.transpose(0, 2, 3, 1))
    wp = np.ascontiguousarray(pack_sign(wi.transpose(0, 2, 3, 1)).transpose(1, 2, 3, 0))
    S = rng.choice(np.array(signs, np.int32), size=oc)
    T = (S * ref[0, 0, 0] + rng.integers(-1, 2, size=oc)).astype(np.int32)
    ob = np.empty(ref.shape[:3] + (1,), np.uint64)
    (C.bconv2d_sign_serial if serial else C.bconv2d_sign)(xp, wp, c, 1, 1, 1, 1, 1, 1, S, T, ob)
    np.testing.assert_array_equal(unpack_bits(ob, oc), np.where(S.astype(np.int64) * ref >= T, 1, -1))


def test_unit_thresholds_decide_every_dot_exactly():
    """The precomputed comparison of bconv2d_sign's interior pixels (``(a ^ flip) > thr``) equals
    ``not (S * (full - 2 a) >= T)`` for S = +1 and -1, every popcount a in 0..full, and thresholds T of both
    parities and signs, beyond both ends of the dot's range (exhaustive over small ``full``)."""
    from stbin.deploy._loops import threshold_word_above, unit_thresholds

    for full in (0, 1, 9, 144, 575):
        T = np.arange(-full - 3, full + 4, dtype=np.int32)
        for s in (1, -1):
            S = np.full(len(T), s, np.int32)
            flip, thr = np.empty(len(T), np.int64), np.empty(len(T), np.int64)
            unit_thresholds(S, T, np.int64(full), flip, thr)
            a = np.arange(full + 1, dtype=np.int64)[:, None]
            want = ~(s * (full - 2 * a) >= T[None, :])
            np.testing.assert_array_equal((a ^ flip[None, :]) > thr[None, :], want)
            acc = np.ascontiguousarray(np.broadcast_to(a, (full + 1, len(T))).astype(np.uint64))
            for row in (0, full // 2, full):  # the vector path (8 at a time) and its scalar tail
                for lo, hi in ((0, min(len(T), 64)), (len(T) - min(len(T), 13), len(T))):
                    word = int(threshold_word_above(acc, row, np.int64(full), flip, thr, S, T, lo, hi))
                    got = [(word >> (j - lo)) & 1 for j in range(lo, hi)]
                    np.testing.assert_array_equal(got, want[row, lo:hi].astype(int))


@pytest.mark.parametrize("oc", [32, 80])
@pytest.mark.parametrize("serial", [True, False])
def test_bconv2d_sign_interior_thresholds_at_the_dot(oc, serial):
    """Thresholds at and next to an interior pixel's dot (the precomputed comparison's path), S = +-1, one and two
    words of output channels: the bits of ``S * dot >= T`` at every pixel, border pixels included."""
    from stbin.deploy import _conv_loops as C

    rng = np.random.default_rng(oc + serial)
    for c in (16, 40):
        xi, wi = pm1(rng, 2, c, 7, 7), pm1(rng, oc, c, 3, 3)
        ref = F.conv2d(torch.from_numpy(xi).float(), torch.from_numpy(wi).float(), None, 1, 1)
        ref = ref.permute(0, 2, 3, 1).numpy().astype(np.int64)
        xp = pack_sign(xi.transpose(0, 2, 3, 1))
        wp = np.ascontiguousarray(pack_sign(wi.transpose(0, 2, 3, 1)).transpose(1, 2, 3, 0))
        S = rng.choice(np.array([-1, 1], np.int32), size=oc)
        T = (S * ref[1, 3, 3] + rng.integers(-1, 2, size=oc)).astype(np.int32)
        ob = np.empty(ref.shape[:3] + (n_words(oc),), np.uint64)
        (C.bconv2d_sign_serial if serial else C.bconv2d_sign)(xp, wp, c, 1, 1, 1, 1, 1, 1, S, T, ob)
        want = np.where(S.astype(np.int64) * ref >= T, 1, -1)
        np.testing.assert_array_equal(unpack_bits(ob.reshape(-1, n_words(oc)), oc).reshape(want.shape), want)
