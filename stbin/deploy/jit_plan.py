"""One compiled function per network and input shape: the whole forward pass in a single numba call.

The op-by-op run (:mod:`stbin.deploy.plan`) pays a Python call, a checked kernel entry point and a
numba dispatch per op: ~5-15 µs each, i.e. most of the time of a small network at batch 1
(``benchmarks/bench_dispatch.py``). A numba function calling other numba functions pays none of it.
:func:`compile_plan` therefore generates, for one input shape, the source of a function

.. code-block:: python

    def segment(v0, c0, c1, ...):         # v0: the input; c*: weights, thresholds, scratch buffers
        v1 = np.empty((1, 8), np.uint64)
        k1(v0, c0, c1, c2, c3, c4, v1)    # the compiled loop of step 0 (e.g. float_dense_sign_serial)
        v2 = np.empty((1, 8), np.uint64)
        k2(v1, c5, 512, c6, c7, v2)       # bgemm_sign_serial
        ...
        return v7

compiles it once with ``numba.njit`` and keeps it on the network (the source goes to a file in
:func:`cache_dir`, so that numba's on-disk cache makes the next process load it instead of
compiling it again; a cold compile costs seconds to minutes: :data:`INLINE_INTEGERS`). The calls are found by
**running** each step of the plan on placeholder arrays of the exact shapes with the kernels in
recording mode (:func:`stbin.deploy.kernels.recording`): every checked entry point checks its
arguments as usual, then records ``(compiled loop, arguments)`` instead of running the loop. So the
generated function calls exactly the loops, with exactly the arguments, that the op-by-op run calls
(the results are bit for bit the same; tests check it), and the shape checks of every op ran once
for these shapes: the only thing left to check on the hot path is that the input has the shape and
dtype the function was built for.

A step whose run is not made of kernel calls (a torch convolution, a BLAS GEMM) cannot be compiled:
the plan is then split into compiled **segments** with those steps run by Python in between; values
a later segment needs (e.g. a shortcut saved before the break) are returned by the segment that
makes them and passed to the one that uses them. Arrays passed to a recorded call become read-only
while the step is recorded, so a step that computes on a kernel's output with numpy after the call
fails to record and runs as a Python step instead of being compiled wrongly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stbin._io import atomic_write
from stbin.deploy.ops import RunContext


def _from_environment(text: str | None) -> Any:
    """$STBIN_INLINE_INTEGERS as a bool (unset: True); other text is kept, to be refused."""
    words = {"1": True, "true": True, "0": False, "false": False}
    return True if text is None else words.get(text.strip().lower(), text)


#: How the integers of the recorded calls (channel counts, strides, paddings, flags) go into the generated source.
#: True (default): as literals. numba then compiles each loop once per distinct set of integers it is called with,
#: specialised on them (branches on flags pruned, index arithmetic folded): the fastest plans, but a cold compile of
#: a network's plan takes one compile of a large loop per distinct layer shape, e.g. 106 s for resnet20 at batch 1
#: against 7.7 s with False (1 thread, AMD EPYC Zen 3, empty caches; under 0.1 s from numba's cache later).
#: False: as ``np.int64(...)`` values (the type the op-by-op run passes), so each loop is compiled once for every
#: network and shape, at 0-9% more latency at batch 1 (resnet20 0.692 against 0.635 ms).
#: ``benchmarks/bench_plan_compile.py`` measures both. Read when a plan is built: plans already compiled keep theirs.
#: Set at import from ``$STBIN_INLINE_INTEGERS`` (``1``/``true``, ``0``/``false``; other text is refused then).
INLINE_INTEGERS: Any = _from_environment(os.environ.get("STBIN_INLINE_INTEGERS"))


def inline_integers() -> bool:
    """:data:`INLINE_INTEGERS`, checked: a ValueError (one line) names a value that is not a bool."""
    if isinstance(INLINE_INTEGERS, (bool, np.bool_)):  # a string such as "False" would be taken as true
        return bool(INLINE_INTEGERS)
    raise ValueError(f"stbin.deploy.jit_plan.INLINE_INTEGERS (set by $STBIN_INLINE_INTEGERS: 1/true or 0/false) "
                     f"must be True or False, got {INLINE_INTEGERS!r}")


class _Unplannable(Exception):
    """A step that cannot be compiled into a segment (it runs as a Python step)."""


def _same_memory(a: np.ndarray, v: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == v.__array_interface__["data"][0] and a.dtype == v.dtype
            and a.nbytes == v.nbytes and a.flags.c_contiguous and v.flags.c_contiguous)


def _shape(a: np.ndarray) -> str:
    return repr(tuple(int(s) for s in a.shape))


class _Values:
    """The arrays of the forward pass, by variable name (``v0`` is the input), with the item that makes each."""

    def __init__(self) -> None:
        self.arrays: dict[int, tuple[str, np.ndarray]] = {}  # id(placeholder) -> (name, array)
        self.keep: list[np.ndarray] = []  # keeps the ids unique while building

    def bind(self, a: np.ndarray) -> str:
        name = f"v{len(self.keep)}"
        self.arrays[id(a)] = (name, a)
        self.keep.append(a)
        return name

    def ref(self, a: np.ndarray) -> tuple[str, str] | None:
        """(expression, variable) of a known array or of a reshaped view of one; None if unknown."""
        if id(a) in self.arrays:
            name = self.arrays[id(a)][0]
            return name, name
        for name, v in self.arrays.values():
            if a.size and v.size and np.shares_memory(a, v):
                if _same_memory(a, v):
                    return f"{name}.reshape({_shape(a)})", name
                raise _Unplannable(f"a kernel argument overlaps {name} partially")
        return None


class _Segment:
    """Generated code of a run of compiled steps: lines, the loops it calls, its constants."""

    def __init__(self, index: int, inline: bool) -> None:
        self.index = index
        self.inline = inline  # INLINE_INTEGERS, read once for the plan
        self.lines: list[str] = []
        self.globals: dict[str, Any] = {"np": np}
        self.consts: list[Any] = []
        self.uses: set[str] = set()
        self.makes: list[str] = []

    def const(self, a: np.ndarray | int) -> str:
        """An integer written in the source (a literal, or of its own numpy type: :data:`INLINE_INTEGERS`), or an array
        passed as a parameter (weights, scratch buffers)."""
        if not isinstance(a, np.ndarray):
            return repr(int(a)) if self.inline else f"np.{np.asarray(a).dtype.name}({int(a)})"
        self.consts.append(a)
        return f"c{len(self.consts) - 1}"


def _record(seg: _Segment, values: _Values, step: Callable, x: np.ndarray, ctx: RunContext) -> np.ndarray:
    """Run ``step`` on the placeholder ``x`` with the kernels recording; add its calls to ``seg``."""
    from stbin.deploy import kernels

    try:
        with kernels.recording() as rec:
            y = step(x, ctx)
    except ValueError as e:
        if "read-only" in str(e):  # numpy wrote to a kernel's array after the call: not compilable
            raise _Unplannable(str(e)) from None
        raise
    calls = rec.calls
    if any(not loop.py_func.__name__.endswith("_serial") for loop, _ in calls):
        raise _Unplannable("a parallel kernel: its launch costs more than the step's Python call")
    if not isinstance(y, np.ndarray):
        raise _Unplannable("the step returns no array")
    if not calls:  # a view op (flatten, save, load) or a step that computes without the kernels
        known = values.ref(y)
        if known is None:
            raise _Unplannable("the step computes without the engine's kernels")
        if id(y) not in values.arrays:
            seg.uses.add(known[1])
            name = values.bind(y)
            seg.lines.append(f"    {name} = {known[0]}")
            seg.makes.append(name)
        return y
    out = [a for _, args in calls for a in args if isinstance(a, np.ndarray) and a.size and y.size
           and np.shares_memory(a, y) and values.ref(a) is None]
    if not out or not all(_same_memory(a, y) for a in out):
        raise _Unplannable("the step's output is not exactly what its kernels write")
    for _, args in calls:
        for a in args:
            if not isinstance(a, (np.ndarray, int, np.integer)) or isinstance(a, (bool, np.bool_)):
                raise _Unplannable(f"cannot pass {type(a).__name__} to a compiled loop")
    owned = _owned(ctx.net) | set(rec.scratch)
    for _, args in calls:
        for a in args:
            if isinstance(a, np.ndarray) and values.ref(a) is None and id(a) not in owned and not any(
                    a.size and np.shares_memory(a, o) for o in out):
                raise _Unplannable("a kernel reads an array computed outside the kernels")
    lines = []
    name = values.bind(y)
    lines.append(f"    {name} = np.empty({_shape(y)}, np.{y.dtype.name})")
    seg.makes.append(name)
    for loop, args in calls:
        exprs = []
        for a in args:
            if isinstance(a, np.ndarray):
                known = values.ref(a)
                if known is not None:
                    exprs.append(known[0])
                    if known[1] != name:
                        seg.uses.add(known[1])
                    continue
            exprs.append(seg.const(a))
        fn = f"k{len(seg.globals)}"
        seg.globals[fn] = loop
        lines.append(f"    {fn}({', '.join(exprs)})")
    seg.lines.extend(lines)
    return y


def _owned(net: Any) -> set[int]:
    """Ids of the arrays that a compiled plan may take as constants: the ops' arrays and their cached
    run-time forms (a kernel argument computed at run time from the input must never become a constant)."""
    ids: set[int] = set()
    todo: list[Any] = [a for op in net.ops for a in op.arrays.values()] + list(net._torch_cache.values())
    while todo:
        a = todo.pop()
        if isinstance(a, np.ndarray):
            ids.add(id(a))
        elif isinstance(a, (tuple, list)):
            todo.extend(a)
        elif isinstance(a, dict):
            todo.extend(a.values())
    return ids


class CompiledPlan:
    """The plan for one input shape: compiled segments and Python steps, run in order."""

    def __init__(self, items: list[tuple[Any, ...]], final: str, shape: tuple[int, ...]) -> None:
        self.items = items
        self.final = final
        self.shape = shape
        self.single = len(items) == 1 and items[0][0] == "segment"
        if self.single:
            self.fn, self.consts = items[0][1], items[0][4]

    @property
    def sources(self) -> list[str]:
        return [it[5] for it in self.items if it[0] == "segment"]

    def __call__(self, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        """Run on ``x`` (float32, C-contiguous, of the plan's shape: the caller checks it)."""
        if self.single:
            return self.fn(x, *self.consts)
        env = {"v0": x}
        for item in self.items:
            if item[0] == "segment":
                _, fn, uses, makes, consts, _src = item
                res = fn(*[env[u] for u in uses], *consts)
                if len(makes) == 1:
                    env[makes[0]] = res
                else:
                    env.update(zip(makes, res))
            else:
                _, step, src, dst, slots = item
                for k, (name, shape) in slots.items():  # what compiled segments saved, as the op-by-op run has it
                    ctx.slots[k] = env[name].reshape(shape)
                env[dst] = step(env[src], ctx)
        return env[self.final]


def cache_dir() -> Path:
    """Where generated segments are kept (compiled by numba once, then loaded from its on-disk cache):
    ``$STBIN_PLAN_CACHE``, else ``~/.cache/stbin/plans``."""
    return Path(os.environ.get("STBIN_PLAN_CACHE") or Path.home() / ".cache" / "stbin" / "plans")


def _kernel_digest() -> str:
    """Digest of the compiled loops' sources: a generated segment's file name includes it, so that numba's
    cache of a segment (which does not notice changes in the functions it calls) is never used stale."""
    if not _DIGEST:
        from stbin.deploy import _simd
        from stbin.deploy.kernels import LOOP_MODULES

        h = hashlib.sha256()
        for m in (*LOOP_MODULES, _simd):  # the loops and the vector intrinsics they inline
            h.update(Path(m.__file__).read_bytes())
        _DIGEST.append(h.hexdigest()[:16])
    return _DIGEST[0]


_DIGEST: list[str] = []


def _where(loop: Any) -> str:
    """The module that holds the compiled loop ``loop`` under its function's name."""
    from stbin.deploy.kernels import LOOP_MODULES

    for m in LOOP_MODULES:
        if getattr(m, loop.py_func.__name__, None) is loop:
            return m.__name__
    raise _Unplannable(f"{loop.py_func.__name__} is not a loop of the engine")


def _load(code: str, imports: dict[str, Any]) -> Any:
    """The njit function of ``code`` (one function ``segment``), from a file in :func:`cache_dir` with
    numba's on-disk cache; in memory without the cache when the folder is not writable."""
    from numba import njit

    head = [f"from {_where(f)} import {f.py_func.__name__} as {k}" for k, f in imports.items()]
    src = "\n".join(["import numpy as np", "from numba import njit", *head, "", "",
                      "@njit(cache=True, nogil=True, fastmath=False)", code, ""])
    name = f"stbin_plan_{hashlib.sha256((_kernel_digest() + src).encode()).hexdigest()[:24]}"
    try:
        path = cache_dir() / f"{name}.py"
        if not path.exists() or path.read_bytes() != src.encode():  # never run a file we did not write
            atomic_write(path, lambda f: f.write(src.encode()))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module  # numba's cache finds a function's module by name
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module.segment
    except OSError:
        scope: dict[str, Any] = {"np": np, **imports}
        exec(compile(code, "<stbin plan segment>", "exec"), scope)
        return njit(nogil=True, fastmath=False)(scope["segment"])


def _finish(seg: _Segment, later: set[str], final: str) -> tuple[Any, ...]:
    uses = sorted(seg.uses - set(seg.makes), key=lambda v: int(v[1:]))
    makes = [v for v in seg.makes if v in later or v == final]
    ret = makes[0] if len(makes) == 1 else "(" + "".join(f"{m}, " for m in makes) + ")"  # "()": nothing later reads
    params = uses + [f"c{i}" for i in range(len(seg.consts))]
    code = "\n".join([f"def segment({', '.join(params)}):"] + seg.lines + [f"    return {ret}"])
    fn = _load(code, {k: v for k, v in seg.globals.items() if k != "np"})
    return ("segment", fn, uses, makes, tuple(seg.consts), code)


def _placeholder(shape: tuple[int, ...], net: Any) -> np.ndarray:
    """A valid input of ``shape`` to build and compile on: zeros, or the grid's first value for inputs declared on
    an 8-bit grid (:mod:`stbin.deploy.input_grid`: zeros may lie off it)."""
    grid = net.meta.get("input_grid")
    return np.full(shape, grid["offset"] if grid else 0.0, np.float32)


def _segment_slots(ctx: RunContext, values: _Values, by_python: dict[Any, int]
                   ) -> dict[Any, tuple[str, tuple[int, ...]]] | None:
    """The slots (saved shortcuts, kept real maps) that compiled segments filled before a Python step, as
    (variable, shape) to hand over at run time: a Python step reads them from the run context, which only
    the op-by-op run fills. A slot that is not a whole variable of the plan (e.g. a strided view) is
    removed from ``ctx``, so that a step after it that reads it fails now (KeyError: no plan), not at run time."""
    out: dict[Any, tuple[str, tuple[int, ...]]] = {}
    for k, a in list(ctx.slots.items()):
        if by_python.get(k) == id(a):  # stored by a Python step: refilled by that step at run time
            continue
        try:
            known = values.ref(a) if isinstance(a, np.ndarray) else None
        except _Unplannable:
            known = None
        if known is None:  # cannot be handed over: gone for the steps after, as it will be at run time
            del ctx.slots[k]
            continue
        out[k] = (known[1], tuple(int(d) for d in a.shape))
    return out


def compile_plan(steps: list[Callable], shape: tuple[int, ...], net: Any) -> CompiledPlan | None:
    """The plan of ``steps`` for inputs of ``shape`` (batch included): runs of compilable steps become
    compiled segments, the others Python steps. Compiles each segment by running the plan once on zeros.

    None (the op-by-op run) when a step would read a slot that a compiled segment fills with something
    other than one of the plan's variables (e.g. a strided view)."""
    from stbin.deploy import kernels

    inline = inline_integers()  # checked before anything is recorded
    ctx = RunContext(net)
    values = _Values()
    x = _placeholder(shape, net)
    cur = values.bind(x)
    raw: list[Any] = []  # _Segment or ("python", step, src, dst, slots)
    by_python: dict[Any, int] = {}  # slot -> id of the array a Python step stored there (it refills it at run time)
    for step in steps:
        seg = raw[-1] if raw and isinstance(raw[-1], _Segment) else None
        trial = seg if seg is not None else _Segment(len(raw), inline)
        n_lines, n_makes = len(trial.lines), len(trial.makes)
        try:
            try:
                x = _record(trial, values, step, x, ctx)
            except KeyError:  # a slot removed by _segment_slots: the op-by-op run
                return None
            if seg is None:
                raw.append(trial)
            cur = values.arrays[id(x)][0]
            continue
        except _Unplannable:
            del trial.lines[n_lines:], trial.makes[n_makes:]
        slots = _segment_slots(ctx, values, by_python)
        with kernels.KERNEL_LOCK:
            z = _placeholder(x.shape, net) if cur == "v0" else np.zeros(x.shape, x.dtype)
            before = {k: id(v) for k, v in ctx.slots.items()}
            try:
                y = step(z, ctx)  # for real, on zeros (a valid input for the first step): its output's shape
            except KeyError:  # it reads a slot that a segment fills and cannot hand over: the op-by-op run
                return None
        by_python.update({k: id(v) for k, v in ctx.slots.items() if before.get(k) != id(v)})
        dst = values.bind(y)
        raw.append(("python", step, cur, dst, slots))
        x, cur = y, dst
    final = cur
    needed: list[set[str]] = [set() for _ in raw]  # what the items after each one read
    acc: set[str] = set()
    for i in range(len(raw) - 1, -1, -1):
        needed[i] = set(acc)
        item = raw[i]
        acc |= item.uses if isinstance(item, _Segment) else {item[2], *(n for n, _ in item[4].values())}
    items = [_finish(it, needed[i], final) if isinstance(it, _Segment) else it for i, it in enumerate(raw)]
    plan = CompiledPlan(items, final, shape)
    if plan.sources:
        with kernels.KERNEL_LOCK:
            plan(_placeholder(shape, net), ctx)  # compiles the segments
    return plan
