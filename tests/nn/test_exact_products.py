"""stbin.nn.exact_products: the integer route gives the float products' numbers and gradients, and is taken
only where it may (ternary operands, CPU, large enough); the conversion kernel checks every value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stbin.nn as snn
from stbin.estimators import _twins
from stbin.estimators._common import path_thresholds
from stbin.nn import exact_products as ep
from stbin.nn._ternary_numba import to_small_int

needs_route = pytest.mark.skipif(not ep.cpu_supported(), reason="no 8-bit dot-product instructions on this CPU")


@pytest.fixture
def small_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every product takes the integer route where its values allow (small tensors keep the tests fast)."""
    for name in ("MIN_MACS", "MIN_LINEAR_ROWS", "MIN_CONV_REUSE", "MIN_CONV_CHANNELS"):
        monkeypatch.setattr(ep, name, 1)


def _ternary(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0,
             values: tuple[float, ...] = (-1.0, 0.0, 1.0)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), shape, generator=g)
    return torch.tensor(values, dtype=dtype)[idx]


def _routed(y: torch.Tensor) -> bool:
    fn = y.grad_fn
    while fn is not None and type(fn).__name__ == "ViewBackward0":  # a reshape of the batch dimensions
        fn = fn.next_functions[0][0]
    return fn is not None and "_Int" in type(fn).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [0, 1])
def test_to_small_int_converts_and_checks_every_value(dtype: torch.dtype, offset: int) -> None:
    src = torch.tensor([1.0, -1.0, 0.0, -0.0] * 33000, dtype=dtype).numpy()  # three parallel chunks
    dst = np.empty(src.shape, np.int8 if offset == 0 else np.uint8)
    for parallel in (False, True):
        assert to_small_int(src, dst, offset, parallel, 2)
        assert (dst.astype(np.int64) - offset == np.sign(src)).all()
    one = dtype == torch.float32 and np.float32(1.0) or np.float64(1.0)
    bad_values = [0.5, 2.0, -3.0, np.nextafter(one, 2), np.nextafter(-one, -2), np.nextafter(0, 1, dtype=src.dtype),
                  np.inf, -np.inf, np.nan, 127.0]
    for bad in bad_values:  # one bad value anywhere, at either end or in the middle, is found
        for pos in (0, len(src) // 2, len(src) - 1):
            s = src.copy()
            s[pos] = bad
            for parallel in (False, True):
                assert not to_small_int(s, dst, offset, parallel, 2), (bad, pos, parallel)


def test_to_small_int_refuses_bad_arrays() -> None:
    src = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="source"):
        to_small_int(np.ones((2, 4), np.float32), np.empty(8, np.int8))
    with pytest.raises(ValueError, match="destination"):
        to_small_int(src, np.empty(8, np.uint8), 0)
    with pytest.raises(ValueError, match="destination"):
        to_small_int(src, np.empty(7, np.int8), 0)
    with pytest.raises(ValueError, match="destination"):
        to_small_int(src, np.empty(8, np.int8), 2)


@needs_route
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(64, 512, 256), (3, 1000, 777), (700, 33, 97)])
def test_linear_equals_the_float_product_and_its_gradients(dtype: torch.dtype, shape: tuple[int, int, int],
                                                           small_products: None) -> None:
    n, k, m = shape
    x = _ternary((n, k), dtype, 1).requires_grad_()
    w = _ternary((m, k), dtype, 2).requires_grad_()
    x0, w0 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y, y0 = ep.linear(x, w), F.linear(x0, w0)
    assert _routed(y)
    assert torch.equal(y, y0)
    g = torch.randn(y.shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    y.backward(g)
    y0.backward(g)
    assert torch.equal(x.grad, x0.grad) and torch.equal(w.grad, w0.grad)  # autograd's own operations


@needs_route
def test_linear_with_bias_and_batch_dims_is_the_correctly_rounded_sum(small_products: None) -> None:
    x = _ternary((4, 16, 512), seed=4).requires_grad_()
    w = _ternary((384, 512), seed=5)
    b = torch.randn(384, generator=torch.Generator().manual_seed(6)).requires_grad_()
    y = ep.linear(x, w, b)
    assert _routed(y) and y.shape == (4, 16, 384)
    exact = (x.detach().double() @ w.double().t() + b.detach().double()).float()
    assert torch.equal(y, exact)
    y.sum().backward()
    assert torch.equal(b.grad, torch.full((384,), 64.0))


@needs_route
def test_linear_takes_the_float_path_for_non_ternary_or_nan_operands(small_products: None) -> None:
    w = _ternary((256, 512), seed=7)
    for bad in (0.5, float("nan"), float("inf")):
        x = _ternary((64, 512), seed=8)
        x[5, 7] = bad
        y, y0 = ep.linear(x.requires_grad_(), w), F.linear(x, w)
        assert not _routed(y)
        assert torch.equal(y.isnan(), y0.isnan()) and torch.equal(y.nan_to_num(), y0.nan_to_num())
        w2 = w.clone()
        w2[3, 3] = bad
        assert not _routed(ep.linear(_ternary((64, 512), seed=9).requires_grad_(), w2))
    with ep.disabled():
        assert not _routed(ep.linear(_ternary((64, 512)).requires_grad_(), w))


@needs_route
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("geometry", [(1, 1, 1, 1), (2, 1, 1, 1), (1, 0, 2, 1), (2, 2, 1, 1), (1, 1, 1, 4),
                                      (1, (1, 0), (1, 2), 2)])
def test_conv2d_equals_the_float_convolution_and_its_gradients(dtype: torch.dtype, geometry: tuple,
                                                               small_products: None) -> None:
    stride, padding, dilation, groups = geometry
    x = _ternary((6, 32, 13, 11), dtype, 10).requires_grad_()
    w = _ternary((48, 32 // groups, 3, 3), dtype, 11).requires_grad_()
    b = torch.randn(48, dtype=dtype, generator=torch.Generator().manual_seed(12)).requires_grad_()
    x0, w0, b0 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = ep.conv2d(x, w, None, stride, padding, dilation, groups)
    y0 = F.conv2d(x0, w0, None, stride, padding, dilation, groups)
    assert _routed(y) and y.is_contiguous() and y.dtype == dtype
    assert torch.equal(y, y0)
    g = torch.randn(y.shape, dtype=dtype, generator=torch.Generator().manual_seed(13))
    y.backward(g)
    y0.backward(g)
    assert torch.equal(x.grad, x0.grad) and torch.equal(w.grad, w0.grad)  # autograd's own operations
    yb = ep.conv2d(x, w, b, stride, padding, dilation, groups)
    exact = (F.conv2d(x.detach().double(), w.detach().double(), b.detach().double(), stride, padding, dilation,
                      groups)).to(dtype)
    assert _routed(yb) and torch.equal(yb, exact)
    yb.sum().backward()
    assert torch.equal(b.grad, torch.full((48,), float(y[:, 0].numel())))


@needs_route
def test_conv2d_takes_the_float_path_where_it_must(small_products: None) -> None:
    x, w = _ternary((4, 32, 12, 12), seed=14), _ternary((32, 32, 3, 3), seed=15)
    x_half = x.clone()
    x_half[0, 0, 0, 0] = 0.5
    for args in ((x_half, w, None, 1, 1), (x, w, None, 1, "same"), (x.transpose(2, 3), w, None, 1, 1),
                 (x.requires_grad_(), _ternary((32, 32, 3, 3), seed=16) * 0.5, None, 1, 1)):
        y = ep.conv2d(*args)
        assert not _routed(y) and torch.equal(y, F.conv2d(*args))


@needs_route
def test_the_route_needs_enough_work_per_weight() -> None:
    """Defaults: a product below MIN_MACS, a linear layer of few rows, a convolution whose weights are used few
    times per thread or with few output channels keep the float path; large enough ones take the route."""
    threads = torch.get_num_threads()
    w = _ternary((512, 512))
    assert not _routed(ep.linear(_ternary((ep.MIN_LINEAR_ROWS - 1, 512)).requires_grad_(), w))
    assert _routed(ep.linear(_ternary((ep.MIN_LINEAR_ROWS, 512)).requires_grad_(), w))
    side = 16
    n_ok = -(-ep.MIN_CONV_REUSE * threads // side ** 2)
    w = _ternary((ep.MIN_CONV_CHANNELS, 32, 3, 3))
    assert _routed(ep.conv2d(_ternary((n_ok, 32, side, side)).requires_grad_(), w, None, 1, 1))
    if n_ok > 1:
        assert not _routed(ep.conv2d(_ternary((n_ok - 1, 32, side, side)).requires_grad_(), w, None, 1, 1))
    narrow = _ternary((ep.MIN_CONV_CHANNELS - 1, 32, 3, 3))
    assert not _routed(ep.conv2d(_ternary((n_ok, 32, side, side)).requires_grad_(), narrow, None, 1, 1))
    tiny = _ternary((1, 4, 5, 5)).requires_grad_()
    assert not _routed(ep.conv2d(tiny, _ternary((4, 4, 3, 3)), None, 1, 1))


@needs_route
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_binary_layers_use_the_route_with_the_same_outputs_and_gradients(layer: str, small_products: None) -> None:
    def build() -> tuple[torch.nn.Module, torch.Tensor]:
        torch.manual_seed(17)
        if layer == "linear":
            return snn.BinaryLinear(512, 256, input_quantizer=snn.StochasticSign()), torch.randn(64, 512)
        return snn.BinaryConv2d(64, 64, 3, padding=1, input_quantizer=snn.StochasticSign()), torch.randn(8, 64, 12, 12)

    outs = []
    for route in (True, False):
        m, x = build()
        x.requires_grad_()
        torch.manual_seed(18)
        if route:
            y = m(x)
        else:
            with ep.disabled():
                y = m(x)
        assert _routed(y) == route
        y.square().sum().backward()
        outs.append((y.detach(), x.grad, m.latent_weight.grad))
    (y1, gx1, gw1), (y2, gx2, gw2) = outs
    assert torch.allclose(y1, y2, rtol=1e-6, atol=1e-5)  # bias: one rounding against the GEMM's
    assert torch.allclose(gx1, gx2, rtol=1e-4, atol=1e-4) and torch.allclose(gw1, gw2, rtol=1e-4, atol=1e-4)
    m, x = build()
    m.eval_mode = "mean"
    m.eval()
    assert not _routed(m(x.requires_grad_()))  # mean weights are real: the float path, no conversion tried


@needs_route
def test_layers_route_a_binary_input_from_any_source_and_refuse_a_real_one_without_converting_it(
        monkeypatch: pytest.MonkeyPatch, small_products: None) -> None:
    torch.manual_seed(19)
    m = snn.BinaryConv2d(64, 64, 3, padding=1, bias=False)  # no input quantizer: the activation before it binarizes
    pm1 = _ternary((8, 64, 12, 12), values=(-1.0, 1.0), seed=20).requires_grad_()
    assert _routed(m(pm1))
    m.eval()
    y = m(pm1)
    assert _routed(y) and torch.equal(y, F.conv2d(pm1, m.binary_weight("mode"), None, 1, 1))
    calls = []
    real = torch.randn(8, 64, 12, 12, requires_grad=True)
    monkeypatch.setattr("stbin.nn._ternary_numba.to_small_int", lambda *a, **k: calls.append(a) or True)
    assert not _routed(m(real)) and calls == []
    scaled = snn.BinaryConv2d(64, 64, 3, padding=1, channel_scale="mean_abs")
    assert not _routed(scaled(pm1)) and calls == []


@needs_route
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_compiled_layers_call_the_route_as_one_operator_with_eager_numbers(layer: str, small_products: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    x = _ternary((8, 32, 10, 10) if layer == "conv" else (2, 6, 64), values=(-1.0, 1.0), seed=21)
    w = _ternary((48, 32, 3, 3) if layer == "conv" else (40, 64), values=(-1.0, 1.0), seed=22)
    b = torch.randn(48 if layer == "conv" else 40, generator=torch.Generator().manual_seed(23))

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ep.conv2d(x, w, b, 1, 1) if layer == "conv" else ep.linear(x, w, b)

    outs = []
    for fn in (f, torch.compile(f, backend="aot_eager", fullgraph=True)):
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
        y = fn(xs, ws, bs)
        y.square().sum().backward()
        outs.append((y.detach(), xs.grad, ws.grad, bs.grad))
    for eager, compiled in zip(*outs):
        assert torch.equal(eager, compiled)
    explained = torch._dynamo.explain(f)(x, w, b)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    ops = {str(n.target) for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert any("exact_" in o for o in ops), ops


@needs_route
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "circular", "reflect"])
def test_binary_conv_routes_every_padding_mode_with_the_float_numbers(padding_mode: str, small_products: None) -> None:
    torch.manual_seed(24)
    m = snn.BinaryConv2d(32, 32, 3, padding=1, padding_mode=padding_mode, weights="sign", bias=False)
    x = _ternary((4, 32, 9, 9), values=(-1.0, 1.0), seed=25).requires_grad_()
    y = m(x)
    assert _routed(y)
    with ep.disabled():
        y0 = m(x)
    assert not _routed(y0) and torch.equal(y, y0)


@needs_route
def test_cpu_autocast_keeps_the_float_path_and_its_dtype(small_products: None) -> None:
    x, w = _ternary((64, 128), seed=26).requires_grad_(), _ternary((64, 128), seed=27)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y0 = ep.linear(x, w), F.linear(x, w)
        z = ep.conv2d(_ternary((2, 32, 8, 8), seed=28).requires_grad_(), _ternary((32, 32, 3, 3), seed=29), None, 1, 1)
    assert not _routed(y) and y.dtype == y0.dtype == torch.bfloat16 and torch.equal(y, y0)
    assert not _routed(z) and z.dtype == torch.bfloat16


# -- the samplers' int8 twins: used instead of the conversion, with the same numbers --------------------------------

TWINS = {"elementwise_kernel_min_numel": 1, "twin_min_numel": 1}


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the operands converted by the checked kernel (a twin used instead is not converted)."""
    from stbin.nn import _ternary_numba

    calls: list[int] = []
    real = _ternary_numba.to_small_int
    def counted(src: np.ndarray, *args: object) -> bool:
        calls.append(src.size)
        return real(src, *args)

    monkeypatch.setattr(_ternary_numba, "to_small_int", counted)
    return calls


def _sampled(shape: tuple[int, ...], weights: bool, noise: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations / latent weights (leaves) and their samples, with the samplers' twins."""
    from stbin.estimators import bernoulli_weight, stochastic_sign

    a = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()
    fn = bernoulli_weight if weights else stochastic_sign
    with path_thresholds(**TWINS):
        return a, fn(a, noise, 0.9, "sample", torch.Generator().manual_seed(seed + 1))


@needs_route
@pytest.mark.parametrize("noise", ["logistic", "uniform"])
@pytest.mark.parametrize("x_shape", [(40, 96), (4, 10, 96)])
def test_linear_uses_the_samplers_twins_with_the_same_outputs_and_gradients(
        noise: str, x_shape: tuple[int, ...], small_products: None, conversions: list[int]) -> None:
    a, x = _sampled(x_shape, False, noise, 1)
    theta, w = _sampled((48, 96), True, noise, 3)
    b = torch.randn(48, requires_grad=True)
    assert _twins.lookup(x) is not None and _twins.lookup(w) is not None
    y = ep.linear(x, w, b)
    assert _routed(y) and conversions == []  # both operands from their twins
    x0, w0, b0 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y0 = ep.linear(x0, w0, b0)  # copies: no twin, converted
    assert _routed(y0) and conversions == [x.numel(), w.numel()]
    assert torch.equal(y, y0) and torch.allclose(y, F.linear(x0, w0, b0), rtol=1e-6, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), (x, w, b, a, theta))
    grads0 = torch.autograd.grad(y0.square().sum(), (x0, w0, b0))
    assert all(torch.equal(g, g0) for g, g0 in zip(grads, grads0))
    assert torch.equal(grads[4], grads[1])  # and on to the latent weights (identity backward)


@needs_route
def test_conv2d_uses_the_samplers_twins_with_the_same_outputs_and_gradients(small_products: None,
                                                                           conversions: list[int]) -> None:
    _, x = _sampled((2, 8, 10, 10), False, "logistic", 5)
    _, w = _sampled((32, 8, 3, 3), True, "uniform", 7)
    b = torch.randn(32, requires_grad=True)
    y = ep.conv2d(x, w, b, 1, 1)
    assert _routed(y) and conversions == []
    x0, w0, b0 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y0 = ep.conv2d(x0, w0, b0, 1, 1)
    assert _routed(y0) and conversions == [x.numel(), w.numel()] and torch.equal(y, y0)
    grads = torch.autograd.grad(y.square().sum(), (x, w, b))
    grads0 = torch.autograd.grad(y0.square().sum(), (x0, w0, b0))
    assert all(torch.equal(g, g0) for g, g0 in zip(grads, grads0))


@needs_route
def test_a_changed_sample_is_converted_and_none_is_twinned_while_the_route_is_disabled(
        small_products: None, conversions: list[int]) -> None:
    _, x = _sampled((40, 96), False, "logistic", 9)
    _, w = _sampled((48, 96), True, "logistic", 11)
    with torch.no_grad():
        x[0, :5] = 0.0  # in place (a ternary value the twin does not hold): the twin is stale
    y = ep.linear(x, w)
    assert _routed(y) and conversions == [x.numel()]
    assert torch.equal(y, F.linear(x, w))
    with ep.disabled():
        _, x2 = _sampled((40, 96), False, "logistic", 9)
    assert _twins.lookup(x2) is None


@needs_route
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_binary_layers_with_stochastic_inputs_convert_nothing(layer: str, small_products: None,
                                                             conversions: list[int]) -> None:
    torch.manual_seed(23)
    if layer == "linear":
        m, x = snn.BinaryLinear(96, 64, input_quantizer=snn.StochasticSign()), torch.randn(2, 20, 96)
    else:
        m, x = snn.BinaryConv2d(8, 32, 3, padding=1, input_quantizer=snn.StochasticSign()), torch.randn(2, 8, 10, 10)
    torch.manual_seed(24)
    with path_thresholds(**TWINS):
        y = m(x)
    assert _routed(y) and conversions == []
    torch.manual_seed(24)  # the same samples, without twins: both operands converted, the same numbers
    with path_thresholds(**{**TWINS, "twin_min_numel": 1 << 40}):
        y0 = m(x)
    assert _routed(y0) and len(conversions) == 2 and torch.equal(y, y0)


def test_conversion_goes_parallel_where_the_wake_up_pays(monkeypatch, two_threads):
    """The checked int8 conversion takes numba's threads from the size at which this machine's measured thread wake-up
    pays at its own cost per element (``CONVERT_SECONDS``), or from the forced threshold; same values either way."""
    from stbin.estimators import _parallel_cost as cost
    from stbin.nn import _ternary_numba

    flags = []
    real = _ternary_numba.to_small_int
    monkeypatch.setattr(_ternary_numba, "to_small_int",
                        lambda s, d, o, parallel, th=None: (flags.append(parallel), real(s, d, o, parallel, th))[1])
    t = _ternary((3 * cost.MIN_NUMEL,))
    want = torch.sign(t).to(torch.int8)
    outs = []
    for wake in (0.0, 1e-3):  # free: the floor, parallel here; 1 ms at 0.2 ns an element: past the cap, serial
        monkeypatch.setattr(cost, "_WAKE", {two_threads: wake})
        outs.append(ep._small_int(t, 0))
    with path_thresholds(parallel_sampling_min_numel=1):
        outs.append(ep._small_int(t, 0))
    assert flags == [True, False, True]
    for out in outs:
        assert torch.equal(out, want)
