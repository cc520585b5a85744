"""Where the demo MLP at a large batch loses time in ``stbin bench-inference``'s alternating run: the engine's
plan steps timed one by one when it runs back to back ("alone") and when each call follows the torch and
onnxruntime float32 twins ("interleaved", as in the benchmark), and PyTorch's ``linear`` of the first layer alone
on one and on two torch threads in both settings (weights warm in cache, or evicted by the twins). Medians, ms.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python benchmarks/bench_mlp_interleaved.py [--batch 64] [--repeats 40]

``--mkl-packed`` also checks whether MKL's pre-packed linear (``torch.ops.mkl._mkl_linear``, what a frozen
``torch.compile`` graph would call) gives PyTorch's ``linear`` values bit for bit, and times both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _med(v: list[float]) -> float:
    return statistics.median(v) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mkl-packed", action="store_true")
    args = ap.parse_args()
    from stbin.cli.bench_networks import BINARY, NETWORKS, TWIN, _onnx_session, _randomise_bn
    from stbin.deploy import compile_model, kernels
    from stbin.models import build_model

    kernels.set_threads(args.threads)
    torch.set_num_threads(args.threads)
    name, kwargs, shape = NETWORKS["mlp"]
    torch.manual_seed(0)
    binary = build_model(name, **kwargs, **BINARY).eval()
    _randomise_bn(binary, 0)
    twin = build_model(name, **kwargs, **TWIN).eval()
    net = compile_model(binary, shape)
    net.jit = False  # op by op: each step timed
    sess = _onnx_session(twin, shape, args.threads)
    x = torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(args.batch))
    xn = x.numpy()
    net(xn)
    times: dict[int, list[float]] = {i: [] for i in range(len(net._plan))}

    def timed(i, f):  # type: ignore[no-untyped-def]
        def g(h, ctx):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            y = f(h, ctx)
            times[i].append(time.perf_counter() - t)
            return y
        return g
    net._plan = [timed(i, f) for i, f in enumerate(net._plan)]
    w = torch.from_numpy(net.ops[0].arrays["weight"])

    def twins() -> float:
        with torch.no_grad():
            twin(x)
        t = time.perf_counter()
        sess.run(None, {"x": xn})
        return time.perf_counter() - t

    def first_layer(threads: int) -> None:
        torch.set_num_threads(threads)
        with torch.no_grad():
            torch.nn.functional.linear(x, w)
        torch.set_num_threads(args.threads)
    for mode in ("alone", "interleaved", "alone", "interleaved"):
        for v in times.values():
            v.clear()
        total, ort, lin = [], [], {1: [], 2: []}
        for _ in range(args.repeats):
            if mode == "interleaved":
                ort.append(twins())
            t = time.perf_counter()
            net(xn)
            total.append(time.perf_counter() - t)
        for th, acc in lin.items():
            for _ in range(args.repeats):
                if mode == "interleaved":
                    twins()
                t = time.perf_counter()
                first_layer(th)
                acc.append(time.perf_counter() - t)
        steps = " ".join(f"{_med(v):.3f}" for v in times.values())
        ort_ms = _med(ort) if ort else float("nan")
        print(f"{mode:12s} engine {_med(total):.3f} (steps {steps}); onnxruntime {ort_ms:.3f}; "
              f"first layer's linear alone: 1 thread {_med(lin[1]):.3f}, 2 threads {_med(lin[2]):.3f}")
    if args.mkl_packed:
        same = 0
        packed = torch.ops.mkl._mkl_reorder_linear_weight(w, args.batch)
        r: dict[str, list[float]] = {"F.linear": [], "mkl packed": []}
        with torch.no_grad():
            for s in range(20):
                xs = torch.randn(args.batch, shape[0], generator=torch.Generator().manual_seed(s))
                mkl = torch.ops.mkl._mkl_linear(xs, packed, w, None, args.batch)
                same += bool(torch.equal(torch.nn.functional.linear(xs, w), mkl))
            for _ in range(args.repeats):
                t = time.perf_counter()
                torch.nn.functional.linear(x, w)
                r["F.linear"].append(time.perf_counter() - t)
                t = time.perf_counter()
                torch.ops.mkl._mkl_linear(x, packed, w, None, args.batch)
                r["mkl packed"].append(time.perf_counter() - t)
        print(f"MKL pre-packed linear: bit for bit PyTorch's linear in {same}/20 batches; medians "
              + ", ".join(f"{k} {_med(v):.3f}" for k, v in r.items()))
    assert np.isfinite(_med(total))


if __name__ == "__main__":
    main()
