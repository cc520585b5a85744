"""The deploy op registry: every op type carries its checks, its shape inference and its kernel call.

An op of a :class:`~stbin.deploy.engine.DeployedNet` is an :class:`Op` (type name, JSON
attributes, named numpy arrays). Its behaviour is an :class:`OpType` registered in
:data:`OPS` under the type name:

* ``arrays`` — the arrays it may hold: name -> (dtype, number of axes, required); the file
  format stores and restores them generically (dtype ``<u8``, ``<f4`` or ``<i4``);
* :meth:`OpType.check` — its attributes and the shapes of its arrays, on their own;
* :meth:`OpType.infer` — shape inference: from the :class:`TensorSpec` of its input to that
  of its output, refusing any input that does not fit its arrays (the memory-safety
  guarantee of :func:`stbin.deploy.load`);
* :meth:`OpType.run` — the computation on a batch.

How a PyTorch module becomes ops (the compile emission) is a converter registered in
:data:`stbin.deploy.compile.CONVERTERS`. Adding an op type is one file that defines and
registers both, plus its test; see docs/extending.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from stbin._registry import Registry
from stbin.deploy.geometry import conv_out
from stbin.deploy.packing import n_words

MAX_DIM = 2**31 - 1  # every size and integer attribute stays below this


@dataclasses.dataclass
class Op:
    """One step of the graph: ``type``, JSON-serialisable ``attrs`` and named numpy ``arrays``."""

    type: str
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """What flows between ops, per sample (the batch axis is not part of it).

    ``kind="float"``: float32 array of shape (N, *shape), ``shape`` = (F,) or (C, H, W).
    ``kind="bits"``: packed ±1 values (uint64 words, see :mod:`stbin.deploy.packing`);
    ``shape`` = (F,) with ``words`` words per sample ((N, words) array: ``words =
    ceil(F/64)``, or ``H*W*ceil(C/64)`` for a flattened NHWC map), or (H, W, C) for an NHWC
    map stored as (N, H, W, ceil(C/64)).
    """

    kind: str
    shape: tuple[int, ...]
    words: int = 0

    def array_shape(self) -> tuple[int, ...]:
        if self.kind == "float":
            return self.shape
        if len(self.shape) == 3:
            return (*self.shape[:2], n_words(self.shape[2]))
        return (self.words,)

    @staticmethod
    def bits(shape: tuple[int, ...], words: int | None = None) -> "TensorSpec":
        if len(shape) == 3:
            return TensorSpec("bits", tuple(shape), 0)
        return TensorSpec("bits", tuple(shape), n_words(shape[0]) if words is None else words)

    def __str__(self) -> str:
        if self.kind == "bits" and len(self.shape) == 1:
            return f"bits {self.shape[0]} ({self.words} words)"
        return f"{self.kind} {'x'.join(map(str, self.shape))}"


class GraphState:
    """What shape inference tracks besides the current tensor: the slots of saved tensors."""

    def __init__(self) -> None:
        self.slots: dict[int, TensorSpec] = {}


class RunContext:
    """What ops see at run time: the network (caches, float backend) and the slots."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.slots: dict[int, np.ndarray] = {}

    def cache(self, op: Op, key: str, make: Callable[[], Any]) -> Any:
        """A per-op run-time form of its arrays (e.g. tap-major weights), made once.

        The entry keeps ``op`` itself beside the form and is used only for that very object: an op
        made later at the address of a freed one (same ``id``) never gets the old op's form."""
        store = self.net._torch_cache
        k = (key, id(op))
        hit = store.get(k)
        if hit is None or hit[0] is not op:
            hit = store[k] = (op, make())
        return hit[1]


class OpType:
    """Behaviour of one op type; subclass, set the class attributes, register an instance in :data:`OPS`."""

    name: str = ""
    #: name -> (dtype, number of axes, required)
    arrays: dict[str, tuple[type, int, bool]] = {}
    #: vector -> array: the vector (if present) has one entry per row of the array (e.g. a bias per output)
    per_row: dict[str, str] = {}

    def check(self, op: Op) -> None:
        """Attributes and array shapes, on their own (ValueError naming the field)."""

    def infer(self, op: Op, x: TensorSpec, state: GraphState) -> TensorSpec:
        """Output spec for input ``x`` (ValueError if ``x`` does not fit the op)."""
        raise NotImplementedError

    def run(self, op: Op, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        raise NotImplementedError

    # -- generic checks --------------------------------------------------------------
    def check_arrays(self, op: Op) -> None:
        for name, a in op.arrays.items():
            if name not in self.arrays:
                raise ValueError(f"unexpected array {name!r} (allowed: {', '.join(sorted(self.arrays)) or 'none'})")
            dtype, ndim, _ = self.arrays[name]
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
                got = f"{a.dtype} {tuple(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"array {name!r} must be {np.dtype(dtype).name} with {ndim} axes, got {got}")
        for name, (_, _, required) in self.arrays.items():
            if required and name not in op.arrays:
                raise ValueError(f"missing array {name!r}")
        for name, of in self.per_row.items():
            if of in op.arrays:
                vec(op, name, op.arrays[of].shape[0])
        if not isinstance(op.attrs, dict):
            raise ValueError(f"attrs must be a JSON object, got {type(op.attrs).__name__}")


OPS: Registry[OpType] = Registry("deploy op type")


def register_op(cls: type[OpType] | str | None = None, **arrays: tuple[type, int, bool]) -> Any:
    """Class decorator: register an instance of ``cls`` under ``cls.name``.

    ``@register_op("name", weight=(np.uint64, 2, True), ...)`` sets the class's ``name`` and
    ``arrays`` (name -> (dtype, number of axes, required)) first.
    """
    if isinstance(cls, type):
        OPS.register(cls.name, cls())
        return cls

    def add(c: type[OpType]) -> type[OpType]:
        c.name = cls if cls is not None else c.name
        if arrays:
            c.arrays = dict(arrays)
        return register_op(c)
    return add


# -- helpers for op types ------------------------------------------------------------------
def int_attr(op: Op, name: str, minimum: int = 1) -> int:
    v = op.attrs.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= MAX_DIM:
        raise ValueError(f"attribute {name!r} must be an integer in [{minimum}, {MAX_DIM}], got {v!r}")
    return v


def pair_attr(op: Op, name: str, minimum: int) -> tuple[int, int]:
    v = op.attrs.get(name)
    if not (isinstance(v, list) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and minimum <= x <= MAX_DIM for x in v)):
        raise ValueError(f"attribute {name!r} must be two integers in [{minimum}, {MAX_DIM}], got {v!r}")
    return int(v[0]), int(v[1])


def vec(op: Op, name: str, n: int) -> None:
    """Array ``name`` (if present) must have exactly ``n`` entries."""
    a = op.arrays.get(name)
    if a is not None and a.shape != (n,):
        raise ValueError(f"array {name!r} has shape {tuple(a.shape)}, expected ({n},)")


def need_kind(x: TensorSpec, kind: str, ndim: int | None = None) -> None:
    if x.kind != kind:
        raise ValueError(f"takes {kind} input but gets {x}")
    if ndim is not None and len(x.shape) != ndim:
        raise ValueError(f"takes a {kind} input with {ndim} axes per sample, gets {x}")


def conv_geometry(op: Op) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return pair_attr(op, "stride", 1), pair_attr(op, "padding", 0), pair_attr(op, "dilation", 1)


def spatial_out(h: int, w: int, k: tuple[int, int], op: Op) -> tuple[int, int]:
    """Output size of a conv / pool over an (h, w) map; ValueError if it would be empty."""
    (sh, sw), (ph, pw), (dh, dw) = conv_geometry(op)
    oh, ow = conv_out(h, k[0], sh, ph, dh), conv_out(w, k[1], sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {k[0]}x{k[1]} window does not fit the {h}x{w} input (output {oh}x{ow})")
    return oh, ow


def infer_graph(ops: list[Op], input_shape: tuple[int, ...] | None) -> list[TensorSpec]:
    """Check every op and infer the spec after each (ValueError "op k (type): ..." on the first misfit).

    ``input_shape`` is one sample's shape; the network's input is float. Also checks that
    the graph ends in floats.
    """
    state = GraphState()
    x = TensorSpec("float", tuple(input_shape)) if input_shape is not None else None
    specs = []
    for k, op in enumerate(ops):
        try:
            t = OPS.get(op.type)
            t.check_arrays(op)
            t.check(op)
            if x is not None:
                x = t.infer(op, x, state)
                if math.prod(x.array_shape()) > MAX_DIM:
                    raise ValueError(f"output {x} is too large")
        except ValueError as e:
            raise ValueError(f"op {k} ({op.type}): {e}") from None
        specs.append(x)
    if x is not None and x.kind != "float":
        raise ValueError("the graph ends in binary units instead of a float output")
    return specs
