"""Whole-network workloads of ``stbin bench-inference``: the engine against torch float32 and
onnxruntime float32 twins, at batch 1 and a large batch, in one run.

The **twin** of a network is the same architecture with real weights and real activations
(``weights="real"``, ``activation="htanh"``): what a float32 deployment of it computes. The
engine runs the binary network (sign activations and weights, random weights and batch-norm
statistics: timings do not depend on them) and is checked against PyTorch's binary model in
mode on the benchmark batch. Times are medians of ``repeats`` rounds, contestants alternating round
by round; in each round a contestant runs a *burst* of consecutive calls lasting about ``burst_ms``
(the steady-state latency of a model served call after call; 0: a single call, cold after the
other contestants'). onnxruntime's threads wait passively between runs
(``session.intra_op.allow_spinning = 0``), as the engine's do: spinning made onnxruntime faster
at batch 1 (0.084 against 0.108 ms for the MLP) but took the cores from the contestant after it
(the engine's MLP at batch 64: 0.98 against 0.67 ms).
"""

from __future__ import annotations

import io
import math
import time
import warnings
from typing import Any, Callable

from stbin._extras import require_extra

NETWORKS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    # workload: (model, arguments, input shape); the conv nets' width is scaled by --width
    "mlp": ("mlp", {"hidden": (512, 512, 512)}, (784,)),
    "binarynet_vgg": ("binarynet_vgg", {}, (3, 32, 32)),
    "resnet20": ("resnet20", {}, (3, 32, 32)),
    "bireal_resnet18": ("bireal_resnet18", {}, (3, 32, 32)),
}
BINARY = {"activation": "sign", "weights": "sign"}
TWIN = {"activation": "htanh", "weights": "real"}


def ratio_text(engine_s: float, other_s: float) -> str:
    """``engine is 3.1x faster`` / ``engine is 1.4x slower`` (always the engine's speed, in one direction)."""
    r = other_s / max(engine_s, 1e-12)
    return f"engine is {r:.1f}x faster" if r >= 1 else f"engine is {1 / r:.1f}x slower"


def parse_networks(text: str) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    names = [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        if n not in NETWORKS:
            raise ValueError(f"--networks: unknown network {n!r}; valid: {', '.join(NETWORKS)} (or none)")
    return names


def require_onnxruntime() -> None:
    """Checked before any work starts: onnx and onnxruntime are needed for the twins."""
    for name in ("onnx", "onnxruntime"):
        require_extra(name, extra="onnx", purpose="the onnxruntime twins of --networks",
                      alternative="pass --networks none")


def burst_calls(f: Callable[[], Any], burst_ms: float) -> int:
    """How many consecutive calls of ``f`` make a burst of about ``burst_ms`` (1 for ``burst_ms`` 0; at most 200).

    Measured on three calls after the warm-up (the fastest counts)."""
    if burst_ms <= 0:
        return 1
    one = min(_call_seconds(f) for _ in range(3))
    return max(1, min(200, math.ceil(burst_ms * 1e-3 / max(one, 1e-9) - 1e-9)))  # 1e-9: float noise in the ratio


def _call_seconds(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _medians(fns: list[Callable[[], Any]], repeats: int, burst_ms: float = 0.0) -> tuple[list[float], list[int]]:
    """Per contestant, the median over ``repeats`` rounds of its time per call, and its burst length.

    Each round runs every contestant in turn (so that a change of machine load hits them alike): a
    *burst* of consecutive calls lasting about ``burst_ms`` (:func:`burst_calls`), timed as a whole and
    divided by its length -- the steady-state latency of a model called again and again, with its weights
    in cache, as a serving loop sees it and as LCE's own benchmark (``benchmarks/bench_vs_lce.py``)
    measures. ``burst_ms`` 0: one call per round, right after the other contestants' calls (each call
    then finds its weights evicted by the others)."""
    from stbin.deploy.engine import COMPILE_AFTER

    for f in fns:  # warm-up: the engine compiles its plan for a batch shape at the COMPILE_AFTER-th call
        for _ in range(COMPILE_AFTER):
            f()
    sizes = [burst_calls(f, burst_ms) for f in fns]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for f, n, acc in zip(fns, sizes, times):
            t = time.perf_counter()
            for _ in range(n):
                f()
            acc.append((time.perf_counter() - t) / n)
    return [sorted(t)[len(t) // 2] for t in times], sizes


def _randomise_bn(model: Any, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) and m.running_var is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.uniform_(0.5, 2.0, generator=g)


def _onnx_session(model: Any, shape: tuple[int, ...], threads: int) -> Any:
    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros((1, *shape)), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # onnxruntime's pool spins after each run by default, taking the cores from whatever runs next
    # (in this alternating benchmark: the engine, measured 10-20x slower because of it); passive waiting
    # is fair to both and costs onnxruntime a thread wake-up per run
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def bench_network(name: str, width: float, batches: list[int], repeats: int, threads: int,
                  burst_ms: float = 0.0) -> dict[str, Any]:
    """One workload: per batch size the median ms per call of engine, torch fp32 twin and onnxruntime fp32 twin
    (bursts of about ``burst_ms``: :func:`_medians`)."""
    import numpy as np
    import torch

    from stbin.deploy import compile_model
    from stbin.models import build_model
    from stbin.nn import eval_mode

    model_name, kwargs, shape = NETWORKS[name]
    kwargs = dict(kwargs)
    if len(shape) == 3:
        kwargs["width"] = width
    torch.manual_seed(0)
    binary = build_model(model_name, **kwargs, **BINARY).eval()
    _randomise_bn(binary, 0)
    twin = build_model(model_name, **kwargs, **TWIN).eval()
    net = compile_model(binary, shape)
    sess = _onnx_session(twin, shape, threads)
    out: dict[str, Any] = {"model": model_name, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in kwargs.items()},
                           "input_shape": list(shape), "ops": len(net.ops), "packed_bytes": net.nbytes()}
    for b in batches:
        x = torch.randn((b, *shape), generator=torch.Generator().manual_seed(b))
        xn = x.numpy()

        def torch_twin() -> Any:
            with torch.no_grad():
                return twin(x)
        (e, t, o), calls = _medians([lambda: net.predict(xn), torch_twin, lambda: sess.run(None, {"x": xn})],
                                    repeats if b > 1 else repeats * 5, burst_ms)
        with torch.no_grad(), eval_mode(binary, "mode"):
            same = bool(np.array_equal(binary(x).argmax(-1).numpy(), net.predict(xn).argmax(-1)))
        out[f"batch_{b}"] = {"batch": b, "engine_ms": e * 1e3, "torch_fp32_ms": t * 1e3, "onnxruntime_fp32_ms": o * 1e3,
                             "speedup_vs_torch": t / e, "speedup_vs_onnxruntime": o / e,
                             "predictions_identical": same,
                             "burst_calls": dict(zip(("engine", "torch_fp32", "onnxruntime_fp32"), calls))}
    return out


def print_networks(nets: dict[str, Any]) -> None:
    print("networks (median ms per call; the twins are the same architecture in float32):")
    print(f"  {'workload':17s} {'batch':>5s} {'engine':>9s} {'torch fp32':>11s} {'ORT fp32':>9s}  vs onnxruntime"
          "            vs torch")
    for name, r in nets.items():
        for key, m in r.items():
            if not key.startswith("batch_"):
                continue
            e = m["engine_ms"] / 1e3
            print(f"  {name:17s} {m['batch']:5d} {m['engine_ms']:9.3f} {m['torch_fp32_ms']:11.3f} "
                  f"{m['onnxruntime_fp32_ms']:9.3f}  {ratio_text(e, m['onnxruntime_fp32_ms'] / 1e3):24s} "
                  f"{ratio_text(e, m['torch_fp32_ms'] / 1e3)}"
                  + ("" if m["predictions_identical"] else "  (PREDICTIONS DIFFER)"))
