"""The screened first layer gives exactly the bits of the fused float loop (``kernels.float_dense_sign``),
including where the pre-activation sits on its threshold or one ulp from it, for non-finite and huge
inputs, and in a compiled network."""

import numpy as np
import pytest
import torch

from stbin.deploy import compile_model, kernels, screened
from stbin.deploy.packing import n_words
from stbin.models import build_model

from .test_engine import randomise_bn

needs_vnni = pytest.mark.skipif(not screened.HAVE_VNNI, reason="the screen needs AVX-512 VNNI")


def _layer(rng, m, k, scale=1.0):
    W = (rng.uniform(-1, 1, (m, k)) * scale / np.sqrt(k)).astype(np.float32)
    b = (rng.standard_normal(m) * 0.05).astype(np.float32)
    S = (rng.choice([-1.0, 1.0], m) * rng.uniform(0.5, 2, m)).astype(np.float32)
    S[::7] = 0.0  # a zero scale: the bit is the constant 0 >= T
    T = (rng.standard_normal(m) * 0.1).astype(np.float32)
    return W, np.ascontiguousarray(W.T), b, S, T


def _both(x, W, Wt, b, S, T):
    ops = screened.screen_operands(W, Wt, b, S, T)
    assert ops is not None
    ref, got = (np.empty((len(x), n_words(len(W))), np.uint64) for _ in range(2))
    kernels.float_dense_sign(x, Wt, b, S, T, ref)
    screened.screened_dense_sign(x, ops, b, S, T, got)
    return ref, got


@needs_vnni
@pytest.mark.parametrize("n, k, m", [(1, 784, 512), (3, 5, 70), (8, 130, 1), (2, 64, 64), (1, 257, 129), (2, 1, 3),
                                     (3, 8, 9), (2, 9, 17)])
def test_equals_the_fused_loop(n, k, m):
    rng = np.random.default_rng(n * 1000 + k + m)
    W, Wt, b, S, T = _layer(rng, m, k)
    for scale in (1.0, 1e-30, 1e-42, 1e30, 3.0):
        x = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        x[0, : k // 3] = 0.0
        ref, got = _both(x, W, Wt, b, S, T)
        np.testing.assert_array_equal(got, ref)


@needs_vnni
def test_non_finite_zero_and_overflowing_rows():
    rng = np.random.default_rng(1)
    W, Wt, b, S, T = _layer(rng, 100, 300)
    x = rng.standard_normal((6, 300)).astype(np.float32)
    x[0, 3] = np.inf
    x[1, 4] = np.nan
    x[2] = 0.0
    x[3] = 3e38  # partial sums overflow to inf in float32: the row runs the fused loop itself
    x[4, ::2] = -3e38
    x[5, 0] = np.float32(1.4e-45)  # the smallest subnormal
    ref, got = _both(x, W, Wt, b, S, T)
    np.testing.assert_array_equal(got, ref)


@needs_vnni
@pytest.mark.parametrize("shift", [-2, -1, 0, 1, 2])
def test_thresholds_on_and_next_to_the_pre_activation(shift):
    """T set to S * y (y: the fused loop's own float32 pre-activation) moved by ``shift`` ulps: every output is
    undecided by the screen and its refinement, so the exact recomputation must reproduce y bit for bit."""
    rng = np.random.default_rng(2 + shift)
    m, k = 96, 200
    W, Wt, b, S, _ = _layer(rng, m, k, scale=3.0)
    S[S == 0] = 1.0
    x = rng.standard_normal((2, k)).astype(np.float32)
    y = np.empty((2, m), np.float32)
    kernels.float_dense(x, Wt, b, y)
    T = (S * y[0]).astype(np.float32)
    for _ in range(abs(shift)):
        T = np.nextafter(T, np.float32(np.inf if shift > 0 else -np.inf)).astype(np.float32)
    ref, got = _both(x, W, Wt, b, S, T)
    np.testing.assert_array_equal(got, ref)


@needs_vnni
def test_thresholds_made_non_finite_after_the_operands_run_the_fused_loop():
    """S = inf with T = -inf makes the bit non-monotone in y (true, false at y = 0, true): the loop must not screen."""
    rng = np.random.default_rng(6)
    W, Wt, b, S, T = _layer(rng, 64, 40)
    ops = screened.screen_operands(W, Wt, b, S, T)
    S[:8], T[:8] = np.inf, -np.inf
    b[:4], b[8] = 0.0, np.nan
    x = rng.standard_normal((3, 40)).astype(np.float32)
    x[1, :] = 0.0  # y = b: 0 * inf = NaN on the zero-bias outputs
    ref, got = (np.empty((3, 1), np.uint64) for _ in range(2))
    kernels.float_dense_sign(x, Wt, b, S, T, ref)
    screened.screened_dense_sign(x, ops, b, S, T, got)
    np.testing.assert_array_equal(got, ref)


def test_no_screen_for_non_finite_parameters():
    rng = np.random.default_rng(3)
    W, Wt, b, S, T = _layer(rng, 10, 20)
    for name in ("W", "b", "S", "T"):
        args = {"W": W.copy(), "b": b.copy(), "S": S.copy(), "T": T.copy()}
        args[name].flat[1] = np.inf
        assert screened.screen_operands(args["W"], Wt, args["b"], args["S"], args["T"]) is None


@needs_vnni
def test_error_norms_bound_the_quantisation_errors():
    """colc holds s, s2 and norms rounded up: each at least the exact norm (float64 with a margin)."""
    rng = np.random.default_rng(4)
    W, Wt, b, S, T = _layer(rng, 70, 150)
    ops = screened.screen_operands(W, Wt, b, S, T)
    s, s2, norm, e1, e2 = ops.colc
    # back from the blocked layout: Q[c, g, 4 l + t] = q[64 c + l, 4 g + t]
    qb = ops.Q.reshape(ops.Q.shape[0], ops.Q.shape[1], 64, 4).transpose(0, 2, 1, 3).reshape(-1, ops.Q.shape[1] * 4)
    q = qb[:70, :150].astype(np.longdouble)
    r = ops.R[:, :150].astype(np.longdouble)
    Wl = W.astype(np.longdouble)
    assert np.all(np.sqrt((Wl ** 2).sum(1)) <= norm)
    assert np.all(np.sqrt(((Wl - s[:, None] * q) ** 2).sum(1)) <= e1)
    assert np.all(np.sqrt(((Wl - s[:, None] * q - s2[:, None] * r) ** 2).sum(1)) <= e2)
    assert np.all(e2 < e1 / 50)  # the refinement is much tighter
    np.testing.assert_array_equal(ops.csum, np.stack([q.sum(1), r.sum(1)]).astype(np.int32))


@needs_vnni
def test_checked_entry_point_refuses_bad_arguments():
    rng = np.random.default_rng(5)
    W, Wt, b, S, T = _layer(rng, 10, 20)
    ops = screened.screen_operands(W, Wt, b, S, T)
    out = np.empty((1, 1), np.uint64)
    with pytest.raises(ValueError, match="screened_dense_sign: X has shape"):
        screened.screened_dense_sign(np.zeros((1, 21), np.float32), ops, b, S, T, out)
    with pytest.raises(ValueError, match="screened_dense_sign: R has shape"):
        screened.screened_dense_sign(np.zeros((1, 20), np.float32), ops._replace(R=ops.R[:5]), b, S, T, out)
    with pytest.raises(ValueError, match="screened_dense_sign: out has shape"):
        screened.screened_dense_sign(np.zeros((2, 20), np.float32), ops, b, S, T, out)
    with pytest.raises(ValueError, match="screened_dense_sign: X must be C-contiguous"):
        screened.screened_dense_sign(np.zeros((1, 40), np.float32)[:, ::2], ops, b, S, T, out)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_compiled_network_same_with_and_without_the_screen(batch, monkeypatch):
    torch.manual_seed(0)
    model = randomise_bn(build_model("mlp", hidden=(96, 64), activation="sign", weights="sign",
                                     in_features=100, num_classes=5))
    x = np.random.default_rng(batch).standard_normal((batch, 100)).astype(np.float32)
    outs = []
    for vnni in (screened.HAVE_VNNI, False):
        monkeypatch.setattr(screened, "HAVE_VNNI", vnni)
        net = compile_model(model)
        outs.append([net(x) for _ in range(4)])  # the third call compiles the plan
    for a in outs[0] + outs[1]:
        np.testing.assert_array_equal(a, outs[1][0])
