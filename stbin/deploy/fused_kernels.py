"""Checked entry points of the fused loops (:mod:`stbin.deploy._fused_loops`).

As in :mod:`stbin.deploy.kernels`: every array's dtype, number of axes and exact shape, and every
integer's range, are checked in Python before the compiled loop runs (a one-line ValueError naming
the kernel and the argument), so that no argument can make a loop read or write out of bounds.
Absent optional operands are passed as empty arrays with a flag (one compiled specialisation).
"""

from __future__ import annotations

import numpy as np

from stbin.deploy.geometry import conv_out
from stbin.deploy.kernels import _arr, _conv_checks, _geometry, _int, _launch, _shape, _thresholds
from stbin.deploy.packing import n_words

#: residual kinds of :func:`bconv2d_res` (RES_FLOAT_NHWC: the real map channel-last, as a fused op keeps it in a slot)
RES_BITS, RES_FLOAT, RES_PROJECT, RES_FLOAT_NHWC, RES_POOL_PROJECT = 0, 1, 2, 3, 4


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _contiguous(k: str, **arrays: np.ndarray) -> None:
    """The loops read these by flat offsets (vector loads): C-contiguous only."""
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"{k}: {name} must be C-contiguous (np.ascontiguousarray)")


def bconv2d_res(X, Wt, c_bits, geometry, scale, bias, alpha, beta, kind, RB, RF, PW, pa, pb, rc,  # type: ignore[no-untyped-def]
                r_stride, before, S, T, out_b, out_f, out_f_nhwc=False, pool=(1, 1)) -> None:
    """The fused tail of a residual block (see :func:`stbin.deploy._fused_loops.bconv2d_res`).

    ``geometry`` = (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w) of the binary convolution; ``kind``:
    0 the ±1 values of bits ``RB`` (N, H', W', ceil(rc/64)), 1 the float32 map ``RF`` (N, rc, H', W') (3: the
    same channel-last, (N, H', W', rc)), 2 the 1x1 projection ``PW`` (rc, OC) of ``RB`` with ``pa``/``pb`` (OC,),
    4 the same projection of the average pool (window ``pool``, stride ``r_stride``, no padding) of the
    channel-last real map ``RF`` (N, H', W', rc); the shortcut is read at (oy * r_stride[0], ox * r_stride[1]) for
    channels ``before .. before + rc - 1``. ``out_b`` (N, OH, OW,
    ceil(OC/64)) uint64, ``out_f`` (N, OC, OH, OW) float32 ((N, OH, OW, OC) with ``out_f_nhwc``), each absent as
    an empty (0, 0, 0, 0) array (at least one present).
    """
    k = "bconv2d_res"
    geo = _geometry(k, *geometry)
    oh, ow = _conv_checks(k, X, Wt, c_bits, geo)
    if oh < 1 or ow < 1:
        raise ValueError(f"{k}: the {Wt.shape[0]}x{Wt.shape[1]} window does not fit the {X.shape[1]}x{X.shape[2]} input")
    n, oc = X.shape[0], Wt.shape[3]
    for name, a in (("scale", scale), ("bias", bias), ("alpha", alpha), ("beta", beta)):
        _arr(k, name, a, np.float32, 1)
        _shape(k, name, a, (oc,))
    kind = _int(k, "kind", kind, 0, 4)
    pool_h, pool_w = (_int(k, "pool", p, 1) for p in pool)
    project = kind in (RES_PROJECT, RES_POOL_PROJECT)
    rc, before = _int(k, "rc", rc, 1), _int(k, "before", before, 0)
    rs_h, rs_w = (_int(k, "r_stride", s, 1) for s in r_stride)
    if project and before != 0:
        raise ValueError(f"{k}: a projection shortcut takes no channel offset, got before={before}")
    if not project and before + rc > oc:
        raise ValueError(f"{k}: shortcut channels {before}..{before + rc - 1} exceed the {oc} outputs")
    _arr(k, "RB", RB, np.uint64, 4)
    _arr(k, "RF", RF, np.float32, 4)
    _arr(k, "PW", PW, np.float32, 2)
    _arr(k, "pa", pa, np.float32, 1)
    _arr(k, "pb", pb, np.float32, 1)
    src = RF if kind in (RES_FLOAT, RES_FLOAT_NHWC, RES_POOL_PROJECT) else RB
    h_, w_ = (src.shape[2], src.shape[3]) if kind == RES_FLOAT else (src.shape[1], src.shape[2])
    if kind == RES_POOL_PROJECT:  # windows inside the map (floor mode): the last one ends at or before h_, w_
        fits = h_ >= pool_h and w_ >= pool_w and (h_ - pool_h) // rs_h + 1 == oh and (w_ - pool_w) // rs_w + 1 == ow
    else:
        fits = _ceil(h_, rs_h) == oh and _ceil(w_, rs_w) == ow
    if src.shape[0] != n or not fits:
        raise ValueError(f"{k}: the shortcut has shape {tuple(src.shape)}, which stride {rs_h}x{rs_w} does not map "
                         f"onto the {n}x{oh}x{ow} output")
    if kind == RES_FLOAT:
        _shape(k, "RF", RF, (n, rc, h_, w_))
    elif kind in (RES_FLOAT_NHWC, RES_POOL_PROJECT):
        _shape(k, "RF", RF, (n, h_, w_, rc))
    else:
        _shape(k, "RB", RB, (n, h_, w_, n_words(rc)))
    if project:
        _shape(k, "PW", PW, (rc, oc))
        _shape(k, "pa", pa, (oc,))
        _shape(k, "pb", pb, (oc,))
    _arr(k, "out_b", out_b, np.uint64, 4)
    _arr(k, "out_f", out_f, np.float32, 4)
    want_b, want_f = _present(out_b), _present(out_f)
    if not (want_b or want_f):
        raise ValueError(f"{k}: needs out_b or out_f")
    _arr(k, "S", S, np.float32, 1)
    _arr(k, "T", T, np.float32, 1)
    _contiguous(k, PW=PW, S=S, T=T, out_b=out_b, out_f=out_f, RF=RF)
    if want_b:
        _thresholds(k, S, T, np.float32, oc)
        _shape(k, "out_b", out_b, (n, oh, ow, n_words(oc)))
    if want_f:
        _shape(k, "out_f", out_f, (n, oh, ow, oc) if out_f_nhwc else (n, oc, oh, ow))
    _launch(k, n * oh * ow * Wt.size, X, Wt, int(c_bits), *geo, scale, bias, alpha, beta, kind, RB, RF, PW, pa, pb,
            rc, rs_h, rs_w, before, S, T, int(want_b), out_b, _want_f(want_f, out_f_nhwc), out_f, oh, ow, pool_h, pool_w)


def conv2d_sign(X, Wk, kh, kw, geometry, bias, alpha, beta, S, T, out_b, out_f,  # type: ignore[no-untyped-def]
                out_f_nhwc=False) -> None:
    """Real convolution of X (N, C, H, W) float32 with tap-major weights ``Wk`` (C*kh*kw, OC), fused with
    ``bias``, ``alpha``/``beta`` (OC,), the threshold ``S``/``T`` (OC,) and packing into ``out_b``
    (N, OH, OW, ceil(OC/64)); ``out_f`` (N, OC, OH, OW) float32 (the real output; (N, OH, OW, OC) with
    ``out_f_nhwc``), or an empty (0, 0, 0, 0) array where it is not needed."""
    k = "conv2d_sign"
    _arr(k, "X", X, np.float32, 4)
    _arr(k, "Wk", Wk, np.float32, 2)
    n, c, h, w = X.shape
    kh, kw = _int(k, "kh", kh, 1), _int(k, "kw", kw, 1)
    _shape(k, "Wk", Wk, (c * kh * kw, Wk.shape[1]))
    oc = Wk.shape[1]
    geo = _geometry(k, *geometry)
    sh, sw, ph, pw, dh, dw = geo
    oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{k}: a {kh}x{kw} window does not fit the {h}x{w} input")
    for name, a in (("bias", bias), ("alpha", alpha), ("beta", beta)):
        _arr(k, name, a, np.float32, 1)
        _shape(k, name, a, (oc,))
    _thresholds(k, S, T, np.float32, oc)
    _arr(k, "out_b", out_b, np.uint64, 4)
    _shape(k, "out_b", out_b, (n, oh, ow, n_words(oc)))
    _arr(k, "out_f", out_f, np.float32, 4)
    _contiguous(k, X=X, Wk=Wk, S=S, T=T, out_b=out_b, out_f=out_f)
    want_f = _present(out_f)
    if want_f:
        _shape(k, "out_f", out_f, (n, oh, ow, oc) if out_f_nhwc else (n, oc, oh, ow))
    _launch(k, n * oh * ow * Wk.size // 16, X, Wk, kh, kw, *geo, bias, alpha, beta, S, T, out_b,
            _want_f(want_f, out_f_nhwc), out_f, oh, ow)


def _want_f(present: bool, nhwc: bool) -> int:
    """The loops' ``want_float``: 0 no real output, 1 NCHW, 2 channel-last."""
    return 0 if not present else 2 if nhwc else 1


def _present(a: np.ndarray) -> bool:
    """An output is absent when it is the empty (0, 0, 0, 0) array (never a real batch: OH, OW >= 1)."""
    return tuple(a.shape) != (0, 0, 0, 0)
