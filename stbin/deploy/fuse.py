"""Fusion: a pass over a checked op list that replaces op sequences by the fused ops of
:mod:`stbin.deploy.ops.fused`, so that each layer's output is read and written once.

* ``conv2d`` [``affine``] [``save`` s] ``sign2d`` -> ``conv2d_sign`` (the real first convolution with
  its batch norm, sign and packing; ``save_slot`` s where the real output is a shortcut);
* the tail of a residual block, ``bconv2d_f`` [``affine``] ``save`` f ``load`` x <shortcut> ``add`` f
  [[``save`` x'] ``sign2d``] -> ``bconv2d_res``, the shortcut being: nothing (x itself), ``bits_float``
  (±1 values of x), [``bits_float``] ``zero_pad_shortcut`` (option A), ``bits_float`` + a 1x1 ``conv2d``
  without bias [+ ``affine``] (the projection of ResNet-20's downsampling blocks), ``avgpool2d`` + such a
  1x1 ``conv2d`` with stride 1 [+ ``affine``] on a real map (Bi-Real Net's downsampling shortcut), or any other chain
  of single-tensor ops, which is then moved before the block's convolution (``save`` h ``load`` x
  <shortcut> ``save`` t ``load`` h) and read from slot t.

A sequence is fused only where the fused op's shape inference accepts it and the slot of the branch (f)
is read nowhere else; the result is checked again like a loaded file. The fused ops compute what the
sequences compute (bit for bit, except the order of the sums of a real convolution: see
:mod:`stbin.deploy._fused_loops`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from stbin.deploy.ops import OPS, GraphState, Op, TensorSpec, infer_graph
from stbin.deploy.ops.residual import MAX_SLOTS

#: a first convolution is fused up to this many taps per output (C * KH * KW): the direct loop is made for
#: a few input channels (images); a wide real convolution keeps the BLAS / torch path
MAX_FIRST_TAPS = 75
#: the longest shortcut chain looked at between ``load`` x and ``add`` f
MAX_SHORTCUT_OPS = 8
_SLOT_OPS = ("save", "load", "add", "bconv2d_res", "conv2d_sign")


def fuse(ops: Sequence[Op], input_shape: Sequence[int] | None) -> list[Op]:
    """``ops`` with the fusable sequences replaced (``ops`` unchanged if the input shape is unknown).

    A fused op keeps its real output in a slot (``save_slot``) only where no ``load`` reads that slot (kernels
    read it in place: a compiled plan passes it as a buffer, while a ``load`` continues with the array itself);
    elsewhere the real output stays the op's output, with the ``save`` and ``sign2d`` after it.
    """
    if input_shape is None:
        return list(ops)
    out = _fuse(list(ops), input_shape, set())
    loaded = {o.attrs["slot"] for o in out if o.type == "load"}
    kept = {o.attrs["save_slot"] for o in out if "save_slot" in o.attrs} & loaded
    return _fuse(list(ops), input_shape, kept) if kept else out


def _fuse(ops: list[Op], input_shape: Sequence[int], no_save: set[int]) -> list[Op]:
    infer_graph(ops, tuple(input_shape))
    reads: dict[int, int] = {}
    for op in ops:
        for key in ("slot", "residual_slot"):
            if key in op.attrs and op.type != "save":
                reads[op.attrs[key]] = reads.get(op.attrs[key], 0) + 1
    used = [op.attrs[k] for op in ops for k in ("slot", "residual_slot", "save_slot") if k in op.attrs]
    fresh = iter(range(max(used, default=-1) + 1, MAX_SLOTS))
    state, x = GraphState(), TensorSpec("float", tuple(int(s) for s in input_shape))
    out: list[Op] = []
    i = 0
    while i < len(ops):
        found = _first_conv(ops, i, x, no_save) or _residual_tail(ops, i, x, state, reads, fresh, no_save)
        new, i = found if found is not None else ([ops[i]], i + 1)
        x = _infer(new, x, state)
        out += new
    infer_graph(out, tuple(input_shape))
    return out


def _infer(new: list[Op], x: TensorSpec, state: GraphState) -> TensorSpec:
    for op in new:
        t = OPS.get(op.type)
        t.check_arrays(op)
        t.check(op)
        x = t.infer(op, x, state)
    return x


def _trial(new: list[Op], x: TensorSpec, state: GraphState) -> bool:
    """Whether ``new`` is accepted from ``x`` (on a copy of the slots)."""
    trial = GraphState()
    trial.slots = dict(state.slots)
    try:
        _infer(new, x, trial)
    except ValueError:
        return False
    return True


def _at(ops: list[Op], j: int, type_: str) -> Op | None:
    return ops[j] if j < len(ops) and ops[j].type == type_ else None


def _first_conv(ops: list[Op], i: int, x: TensorSpec, no_save: set[int]) -> tuple[list[Op], int] | None:
    conv = _at(ops, i, "conv2d")
    if conv is None or math.prod(conv.arrays["weight"].shape[1:]) > MAX_FIRST_TAPS:
        return None
    j = i + 1
    affine = _at(ops, j, "affine")
    j += affine is not None
    save = _at(ops, j, "save")
    j += save is not None
    sign = _at(ops, j, "sign2d")
    if sign is None or (save is not None and save.attrs["slot"] in no_save):
        return None
    attrs: dict[str, Any] = {k: conv.attrs[k] for k in ("stride", "padding", "dilation")}
    if save is not None:
        attrs["save_slot"] = save.attrs["slot"]
    arrays = {**conv.arrays, **(affine.arrays if affine is not None else {}), **sign.arrays}
    new = [Op("conv2d_sign", attrs, arrays)]
    return (new, j + 1) if _trial(new, x, GraphState()) else None


def _residual_tail(ops: list[Op], i: int, x: TensorSpec, state: GraphState, reads: dict[int, int],
                   fresh: Any, no_save: set[int]) -> tuple[list[Op], int] | None:
    conv = _at(ops, i, "bconv2d_f")
    if conv is None:
        return None
    j = i + 1
    affine = _at(ops, j, "affine")
    j += affine is not None
    save_f, load_x = _at(ops, j, "save"), _at(ops, j + 1, "load")
    if save_f is None or load_x is None:
        return None
    f, xs = save_f.attrs["slot"], load_x.attrs["slot"]
    k = j + 2
    while k < len(ops) and k <= j + 2 + MAX_SHORTCUT_OPS and ops[k].type not in _SLOT_OPS:
        k += 1
    add = _at(ops, k, "add")
    if add is None or add.attrs["slot"] != f or reads.get(f) != 1 or f == xs:
        return None
    shortcut = ops[j + 2: k]
    end = k + 1
    save_next = _at(ops, end, "save")
    sign = _at(ops, end + (save_next is not None), "sign2d")
    if save_next is not None and save_next.attrs["slot"] in no_save:
        sign = None
    attrs: dict[str, Any] = {key: conv.attrs[key] for key in ("stride", "padding", "dilation", "in_channels",
                                                              "out_channels")}
    arrays = {**conv.arrays, **(affine.arrays if affine is not None else {})}
    if sign is not None:
        arrays.update(sign.arrays)
        if save_next is not None:
            attrs["save_slot"] = save_next.attrs["slot"]
        end += 1 + (save_next is not None)
    prefix: list[Op] = []
    spec = state.slots.get(xs)
    if spec is None or len(spec.shape) != 3:
        return None
    chans = spec.shape[2] if spec.kind == "bits" else spec.shape[0]
    attrs.update(residual_slot=xs, residual_stride=[1, 1], residual_before=0, residual_channels=chans)
    types = [o.type for o in shortcut]
    bits_first = types[:1] == ["bits_float"] and spec.kind == "bits"
    rest, rest_types = (shortcut[1:], types[1:]) if bits_first else (shortcut, types)
    if rest_types == [] and (bits_first or spec.kind == "float"):
        pass
    elif rest_types == ["zero_pad_shortcut"]:
        attrs.update(residual_stride=list(rest[0].attrs["stride"]), residual_before=rest[0].attrs["channels_before"])
    elif bits_first and _is_projection(rest):
        c = rest[0]
        attrs["residual_stride"] = list(c.attrs["stride"])
        arrays["proj_weight"] = c.arrays["weight"][:, :, 0, 0].copy()
        if len(rest) == 2:
            arrays["proj_alpha"], arrays["proj_beta"] = rest[1].arrays["alpha"], rest[1].arrays["beta"]
    elif spec.kind == "float" and rest_types[:1] == ["avgpool2d"] and _is_projection(rest[1:]) \
            and list(rest[1].attrs["stride"]) == [1, 1]:
        pool, c = rest[0], rest[1]
        attrs.update(residual_stride=list(pool.attrs["stride"]), residual_pool=list(pool.attrs["kernel_size"]))
        arrays["proj_weight"] = c.arrays["weight"][:, :, 0, 0].copy()
        if len(rest) == 3:
            arrays["proj_alpha"], arrays["proj_beta"] = rest[2].arrays["alpha"], rest[2].arrays["beta"]
    else:  # any other shortcut chain: computed first, read from a fresh slot
        h, t = next(fresh, None), next(fresh, None)
        if h is None or t is None:
            return None
        prefix = [Op("save", {"slot": h}, {}), load_x, *shortcut, Op("save", {"slot": t}, {}),
                  Op("load", {"slot": h}, {})]
        trial = GraphState()
        trial.slots = dict(state.slots)
        try:
            _infer(prefix[:-1], x, trial)
        except ValueError:
            return None
        r = trial.slots[t]
        if len(r.shape) != 3:
            return None
        attrs.update(residual_slot=t, residual_channels=r.shape[2] if r.kind == "bits" else r.shape[0])
    new = [*prefix, Op("bconv2d_res", attrs, arrays)]
    return (new, end) if _trial(new, x, state) else None


def _is_projection(rest: list[Op]) -> bool:
    """A 1x1 real convolution without padding, dilation or bias [+ its batch norm ``affine``]."""
    if not rest or rest[0].type != "conv2d" or len(rest) > 2 or (len(rest) == 2 and rest[1].type != "affine"):
        return False
    c = rest[0]
    return (c.arrays["weight"].shape[2:] == (1, 1) and "bias" not in c.arrays and list(c.attrs["padding"]) == [0, 0]
            and list(c.attrs["dilation"]) == [1, 1])
