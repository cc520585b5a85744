"""The inference graph: a list of ops run on numpy arrays with the XNOR-popcount kernels.

A :class:`DeployedNet` is an ordered list of :class:`Op` (type, JSON attributes, named
arrays). Tensors flowing between ops are either **float** (float32, shape (N, F) or NCHW)
or **bits** (uint64 words, shape (N, FW) or channel-packed NHWC (N, H, W, CW); see
:mod:`stbin.deploy.packing`). What each op type does, checks and infers is its entry in the
registry :data:`stbin.deploy.ops.OPS` (the table of types is in :mod:`stbin.deploy.ops`).

Before a batch runs, shape inference (:func:`stbin.deploy.ops.infer_graph`) checks every op
against the actual input shape (once per shape); each kernel checks its arrays again
before its compiled loop runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stbin.deploy.input_grid import check_input_grid
from stbin.deploy.ops import OPS, Op, RunContext, infer_graph
from stbin.deploy.plan import build_plan

__all__ = ["DeployedNet", "Op"]


#: compiled plans kept per network (one per input shape and thread count; the oldest is dropped)
MAX_COMPILED = 8
#: a plan is compiled at the COMPILE_AFTER-th batch of a shape (one-off batches run op by op; a compile takes 0.1 s from
#: numba's cache, seconds to minutes cold: jit_plan.INLINE_INTEGERS),
#: if the batch is small (SMALL_BATCH) or the Python overhead of the op-by-op run (~STEP_OVERHEAD_S per step) is at
#: least MIN_SAVING of the time the fastest earlier batch took: at large batches the kernels dominate and the shape
#: keeps the op-by-op run
COMPILE_AFTER = 3
STEP_OVERHEAD_S = 10e-6
MIN_SAVING = 0.02
#: batches of up to this many samples are always compiled (the latency path)
SMALL_BATCH = 8


def _kernels():  # imported lazily: numba is an optional dependency; kept after the first call (the hot path's lock)
    if not _KERNELS:
        from stbin.deploy import kernels

        _KERNELS.append(kernels)
    return _KERNELS[0]


_KERNELS: list[Any] = []


def _threads() -> int:
    return _kernels().get_threads()


class DeployedNet:
    """A bit-packed network; ``net(x)`` / :meth:`predict` returns float32 outputs (logits).

    ``x`` is what the PyTorch model takes (float, e.g. normalised images (N, 1, 28, 28)).
    Constructing it checks every op (types, arrays, attributes) and, when ``meta`` has an
    ``input_shape``, the shapes of the whole graph: a ValueError names the op and the field.
    """

    FLOAT_BACKENDS = ("auto", "torch", "numpy")

    def __init__(self, ops: list[Op], meta: dict[str, Any] | None = None, float_backend: str = "auto") -> None:
        self.ops = list(ops)
        self.meta = dict(meta or {})
        shape = self.meta.get("input_shape")
        self._checked: dict[tuple[int, ...], bool] = {}
        infer_graph(self.ops, tuple(shape) if shape else None)
        if "input_grid" in self.meta:  # inputs on an 8-bit grid (stbin.deploy.input_grid)
            check_input_grid(self.meta["input_grid"])
        if shape:
            self._checked[tuple(int(s) for s in shape)] = True
        self._plan_ops: tuple[int, ...] = ()
        self.float_backend = float_backend
        self._ctx: RunContext | None = None
        self.jit = True

    @property
    def float_backend(self) -> str:
        """Who runs the float32 (first/last) layers.

        ``"torch"``: PyTorch's own kernels, so those layers compute bit for bit what the PyTorch
        model computes on the same batch (the logits then equal PyTorch's exactly); ``"numpy"``:
        BLAS, single-threaded per part and split over the engine's threads (robust on a busy
        machine, where waking torch's OpenMP pool between the binary kernels cost milliseconds);
        ``"auto"`` (default): numpy for linear layers and 1x1 convolutions (real shortcuts: in the
        engine, torch's thread pool measured 5x slower there), torch for larger convolutions (numpy's im2col
        is slow) and for a first linear layer followed by its sign at batches past the engine's own loop
        (one torch thread per part of the rows: faster than single-threaded numpy BLAS here; see
        :mod:`stbin.deploy.plan`).
        """
        return self._float_backend

    @float_backend.setter
    def float_backend(self, value: str) -> None:
        if value not in self.FLOAT_BACKENDS:
            raise ValueError(f"float_backend must be one of {self.FLOAT_BACKENDS}, got {value!r}")
        self._float_backend = value
        self._torch_cache: dict[Any, Any] = {}  # per-op run-time forms of the arrays
        self._plan: list[Any] | None = None
        self._set_compiled({})

    @property
    def jit(self) -> bool:
        """Run each input shape through one compiled function (:mod:`stbin.deploy.jit_plan`, default),
        compiled at the third batch of that shape where it pays, or, for a batch large enough, split by rows over
        the engine's threads (:mod:`stbin.deploy.batch_split`); ``False``: op by op (same results, bit for bit)."""
        return self._jit

    @jit.setter
    def jit(self, value: bool) -> None:
        self._jit = bool(value)
        self._set_compiled({})
        self._seen: dict[tuple[Any, ...], int] = {}

    def _set_compiled(self, compiled: dict[tuple[Any, ...], Any]) -> None:
        """The compiled plans ((input shape, threads) -> CompiledPlan, BatchSplit or None: op by op) and, by input
        shape, those that are one compiled call (the hot path of :meth:`predict`)."""
        self._compiled = compiled
        self._single = {k[0]: p for k, p in compiled.items() if p is not None and p.single}

    # -- info -------------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes of all weights, thresholds and biases of the packed model."""
        return sum(op.nbytes() for op in self.ops)

    def __repr__(self) -> str:
        lines = [f"DeployedNet({len(self.ops)} ops, {self.nbytes()} bytes)"]
        for op in self.ops:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in op.arrays.items())
            lines.append(f"  {op.type:10s} {shapes}")
        return "\n".join(lines)

    # -- run --------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Outputs of the network for input ``x`` (numpy array or torch tensor), float32."""
        # the hot path: one compiled call for the shape and dtype a single-segment plan was compiled for. Such a
        # plan calls serial loops only, so it runs the same whatever the thread count (not looked up: ~3 us);
        # the lock keeps two threads off its scratch buffers. Its output is a fresh array on every call.
        plan = self._single.get(x.shape) if self._single and type(x) is np.ndarray else None
        if (plan is not None and batch_size is None and x.dtype == np.float32 and x.flags.c_contiguous
                and self._plan_ops == tuple(map(id, self.ops))):
            with _kernels().KERNEL_LOCK:
                return plan.fn(x, *plan.consts)
        plan = self._compiled.get((getattr(x, "shape", None), _threads())) if self._compiled else None
        if (plan is not None and batch_size is None and type(x) is np.ndarray and x.dtype == np.float32
                and x.flags.c_contiguous and self._plan_ops == tuple(map(id, self.ops))):
            with _kernels().KERNEL_LOCK:  # the shape and dtype the plan was compiled for
                return plan(x, RunContext(self))
        x = self._input(x)
        if batch_size is None or len(x) <= batch_size:
            return self._run(x)
        return np.concatenate([self._run(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])

    __call__ = predict

    def profile(self, x: Any) -> list[tuple[str, float]]:
        """Run once and return (op type, seconds) for each op."""
        x = self._input(x)
        out = []
        ctx = RunContext(self)
        with _kernels().KERNEL_LOCK:
            for op in self.ops:
                t = time.perf_counter()
                x = OPS.get(op.type).run(op, x, ctx)
                out.append((op.type, time.perf_counter() - t))
        return out

    def warm_up(self, batch_sizes: Any = (1,)) -> dict[int, str]:
        """Settle now, for the engine's current thread count, how batches of these sizes run: the plan a shape gets
        at its third batch (compiled where it pays) or a split over the threads, after its trial. A service calls
        it at start-up, so that its first requests do not wait for a compile: seconds to minutes on a machine whose
        caches are cold (:data:`stbin.deploy.jit_plan.INLINE_INTEGERS`), under 0.1 s once numba's cache has it.
        Each size runs on a valid placeholder batch (zeros, or the declared 8-bit grid's first value).

        Returns, per batch size, what runs it: ``"one compiled call"``, ``"compiled segments"`` (with Python
        steps between them), ``"split over N threads"`` or ``"op by op"`` (also everything with ``jit`` off).

        >>> import numpy as np
        >>> from stbin.deploy.ops import Op
        >>> w = np.ones((2, 3), np.float32)
        >>> net = DeployedNet([Op("linear", {}, {"weight": w, "bias": np.zeros(2, np.float32)})], {"input_shape": [3]})
        >>> net.warm_up([1, 8])  # batches of up to SMALL_BATCH rows: always compiled
        {1: 'one compiled call', 8: 'one compiled call'}
        """
        from stbin.deploy import batch_split
        from stbin.deploy.jit_plan import _placeholder

        shape = self.meta.get("input_shape")
        if not shape:
            raise ValueError("warm_up needs the network's input shape (meta['input_shape']); run a batch instead")
        sizes = list(batch_sizes) if isinstance(batch_sizes, (list, tuple, range)) else None
        if not sizes or any(not isinstance(b, (int, np.integer)) or isinstance(b, (bool, np.bool_)) or b < 1
                            for b in sizes):
            raise ValueError(f"batch_sizes must be a non-empty list of positive ints, got {batch_sizes!r}")
        sizes = list(dict.fromkeys(int(b) for b in sizes))
        if len(sizes) > MAX_COMPILED:
            raise ValueError(f"batch_sizes: at most {MAX_COMPILED} sizes (the plans kept per network), "
                             f"got {len(sizes)}")
        kinds: dict[int, str] = {}
        for b in sizes:
            x = _placeholder((b, *(int(s) for s in shape)), self)
            key = (x.shape, _threads())
            for _ in range(COMPILE_AFTER + 2 * batch_split.TRIAL_ROUNDS):
                self.predict(x)
                if not self._jit or (key in self._compiled  # settled: compiled, or not, and past any trial
                                     and not isinstance(self._compiled[key], batch_split.SplitTrial)):
                    break
            plan = self._compiled.get(key) if self._jit else None
            if isinstance(plan, batch_split.BatchSplit):
                kinds[b] = f"split over {plan.threads} threads"
            elif plan is not None and plan.sources:
                kinds[b] = "one compiled call" if plan.single else "compiled segments"
            else:  # no plan, or one of Python steps only
                kinds[b] = "op by op"
        return kinds

    def _input(self, x: Any) -> np.ndarray:
        """float32 C-contiguous (N, *input_shape) array, or a ValueError naming the expected shape."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        shape = tuple(int(s) for s in self.meta.get("input_shape", ()))
        if shape:
            if x.ndim < 2 or int(np.prod(x.shape[1:])) != int(np.prod(shape)):
                raise ValueError(f"the network expects inputs of shape (N, {', '.join(map(str, shape))}), "
                                 f"got {tuple(x.shape)}")
            x = x.reshape((len(x),) + shape)
        elif x.ndim < 2:
            raise ValueError(f"the network expects inputs of shape (N, ...), got {tuple(x.shape)}")
        sample = tuple(int(s) for s in x.shape[1:])
        if sample not in self._checked:  # nets built without an input_shape: check this one first
            infer_graph(self.ops, sample)
            self._checked[sample] = True
        return np.ascontiguousarray(x)

    def replica(self) -> "DeployedNet":
        """A network running the same ops (shared, not copied: their arrays are read only) with its own plans,
        compiled functions and scratch buffers, so that it can run beside this one in another thread."""
        twin = DeployedNet(self.ops, self.meta, self.float_backend)
        twin.jit = self.jit
        return twin

    def _run(self, x: np.ndarray) -> np.ndarray:
        with _kernels().KERNEL_LOCK:
            return self._forward(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The outputs for a checked input batch. The caller holds the kernel lock, or is one part of a
        :class:`~stbin.deploy.batch_split.BatchSplit` (one numba thread: no parallel kernel is entered)."""
        ctx = RunContext(self)
        if self._plan is None or self._plan_ops != tuple(map(id, self.ops)):
            self._plan = build_plan(self.ops, self)
            self._plan_ops = tuple(map(id, self.ops))
            self._set_compiled({})
            self._seen = {}
        key = (x.shape, _threads())
        if self._jit and key not in self._compiled:
            calls, seconds = self._seen.get(key, (0, float("inf")))
            if calls + 1 >= COMPILE_AFTER:
                if len(self._compiled) >= MAX_COMPILED:
                    self._compiled.pop(next(iter(self._compiled)))
                from stbin.deploy import batch_split
                from stbin.deploy.jit_plan import compile_plan

                # worth it where the per-step Python overhead is a visible share of the run; always at a small
                # batch (a busy machine must not make a slow first run decide against the latency path)
                worth = len(x) <= SMALL_BATCH or len(self._plan) * STEP_OVERHEAD_S >= MIN_SAVING * seconds
                split = batch_split.worth_splitting(len(x), key[1], seconds)  # one part of the rows per thread?
                trial = split and batch_split.TRIAL_ROUNDS > 0
                whole = compile_plan(self._plan, x.shape, self) if worth and (trial or not split) else None
                if split:
                    parts = batch_split.BatchSplit(self, x, key[1])
                    self._compiled[key] = batch_split.SplitTrial(self, key, parts, whole) if trial else parts
                else:
                    self._compiled[key] = whole
                self._set_compiled(self._compiled)
        plan = self._compiled.get(key) if self._jit else None
        start = time.perf_counter()
        x = plan(x, ctx) if plan is not None else self._steps(x, ctx)
        if self._jit and key not in self._compiled:
            calls, seconds = self._seen.get(key, (0, float("inf")))
            self._seen[key] = (calls + 1, min(seconds, time.perf_counter() - start))  # the first run also loads
        if x.dtype != np.float32:
            raise ValueError("the network ends in binary units; add a float output layer")
        return x

    def _steps(self, x: np.ndarray, ctx: RunContext) -> np.ndarray:
        """The plan's steps one by one (op by op: no compiled function)."""
        for step in self._plan:
            x = step(x, ctx)
        return x

    def _op(self, op: Op, x: np.ndarray, ctx: RunContext | None = None) -> np.ndarray:
        """Run one op (for step-by-step inspection; slots persist between calls on this net)."""
        if ctx is None:
            if self._ctx is None:
                self._ctx = RunContext(self)
            ctx = self._ctx
        with _kernels().KERNEL_LOCK:
            return OPS.get(op.type).run(op, x, ctx)
