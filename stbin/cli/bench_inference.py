"""``stbin bench-inference``: speed and memory of the bit-packed engine against torch float32.

In one run, with the same number of threads for both (``--threads``, default 2):

* **linear layer** — a ``SIZE x SIZE`` binary linear layer at batch ``--linear-batch``:
  torch float32 ``x @ W.T`` against the engine's XNOR-popcount GEMM on packed ±1 inputs
  (int32 dot products out; packing of the input reported separately). ``speedup`` is the
  smaller of the wall-clock ratio (minimum times) and the CPU-time ratio (all threads), since
  on a shared machine each can favour one side. Also measured: the XOR-popcount roofline of
  one core (the GEMM's inner loop on L1-resident words) and the fraction the GEMM reaches
  per CPU-second;
* **whole model** — a checkpoint (or, without one, the demo network ``sbn_mlp`` 784-H-H-H-10
  with ``--hidden`` H, randomly initialised; timings do not depend on the weights): the
  PyTorch model evaluated in mode against the exported engine, latency at batch 1,
  throughput at ``--batch``, and memory (float32 state vs packed model; binary weights).

Timings alternate the two contestants; wall-clock figures are minima over ``--repeats`` runs,
CPU-time figures (all threads of the process) medians. Every headline ratio is the smaller of
the wall-clock and the CPU-time ratio (both are in the JSON).

* **networks** (``--networks``, default ``mlp,resnet20,bireal_resnet18``; also
  ``binarynet_vgg``; ``none`` to skip) — each binary network in the engine against its
  float32 twin (same architecture, real weights and activations) in torch and in onnxruntime,
  at batch 1 and ``--net-batch``, medians in one run, contestants alternating in bursts of
  consecutive calls of about ``--burst-ms`` (steady-state latency; 0: single cold calls);
  convolutional networks at ``--width``.
  Needs onnx and onnxruntime (checked before any work starts).

The engine compiles a plan for each input shape before the timed calls: on a machine whose numba cache
is cold that takes about 100 s for a ResNet (``STBIN_INLINE_INTEGERS=0``: seconds, at up to 9% more latency).

``--json`` prints one JSON object, with ``"linear_4096_speedup"`` (the speed ratio
engine/torch for SIZE = 4096; null for another size) and ``"networks"`` (per workload and
batch: ``engine_ms``, ``torch_fp32_ms``, ``onnxruntime_fp32_ms`` and the speed ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any, Callable


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench-inference", help="benchmark the bit-packed engine against torch float32",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint of the model to benchmark (default: the demo network, random weights)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width of the demo network (default: 512)")
    p.add_argument("--batch", type=int, default=256, help="batch size for throughput (default: 256)")
    p.add_argument("--linear-size", type=int, default=4096, help="binary linear layer SIZE x SIZE (default: 4096)")
    p.add_argument("--linear-batch", type=int, default=256, help="batch of the linear benchmark (default: 256)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs of each measurement (default: 20)")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and the engine (default: 2)")
    p.add_argument("--input-shape", default=None, help="input shape for a convolutional checkpoint, e.g. 1,28,28")
    p.add_argument("--skip-linear", action="store_true", help="skip the linear-layer benchmark")
    p.add_argument("--networks", default="mlp,resnet20,bireal_resnet18",
                   help="whole-network workloads against torch and onnxruntime float32 twins, comma-separated from "
                        "mlp, binarynet_vgg, resnet20, bireal_resnet18, or none (default: mlp,resnet20,bireal_resnet18)")
    p.add_argument("--net-batch", type=int, default=64, help="large batch of the network workloads (default: 64)")
    p.add_argument("--burst-ms", type=float, default=10.0,
                   help="network workloads: each contestant runs bursts of consecutive calls lasting about this many "
                        "ms, timed per call (its steady-state latency, weights in cache; default: 10); 0 times single "
                        "calls, each right after the other contestants' (cold caches)")
    p.add_argument("--width", type=float, default=1.0, help="width factor of the convolutional networks (default: 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def _time_pair(fa: Callable[[], Any], fb: Callable[[], Any], repeats: int) -> tuple[dict, dict]:
    """Alternate fa and fb ``repeats`` times (after one warm-up each).

    Returns per contestant the min and median wall-clock seconds and the median process CPU
    seconds (all threads; robust to other processes sharing the cores).
    """
    fa()
    fb()
    ta: list[tuple[float, float]] = []
    tb: list[tuple[float, float]] = []
    for _ in range(repeats):
        for f, acc in ((fa, ta), (fb, tb)):
            c, t = time.process_time(), time.perf_counter()
            f()
            acc.append((time.perf_counter() - t, time.process_time() - c))

    def stats(ts: list[tuple[float, float]]) -> dict:
        w = sorted(t[0] for t in ts)
        c = sorted(t[1] for t in ts)
        return {"min_s": w[0], "median_s": w[len(w) // 2], "cpu_s": c[len(c) // 2]}
    return stats(ta), stats(tb)


def popcount_peak(repeats: int) -> float:
    """Measured XOR-popcount roofline of one core in binary MACs per CPU-second (kernels.popcount_peak).

    Timed by the thread's CPU time, so that other processes sharing the core do not count.
    """
    import numpy as np

    from stbin.deploy import kernels

    kw, reps = 64, 20000  # 5 x 512 B (L1); 4 x 64 x 20000 XOR-popcounts per call (~2 ms)
    x = np.random.default_rng(0).integers(0, 2**63, size=(1, 5, kw), dtype=np.uint64)
    threads = kernels.get_threads()
    best = float("inf")
    with kernels.KERNEL_LOCK:
        kernels.set_threads(1)
        try:
            kernels.popcount_peak(x, 1)
            for _ in range(max(5, repeats)):
                t = time.process_time()
                kernels.popcount_peak(x, reps)
                best = min(best, time.process_time() - t)
        finally:
            kernels.set_threads(threads)
    return 4 * kw * 64 * reps / max(best, 1e-9)


def bench_linear(size: int, batch: int, repeats: int, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from stbin.deploy import kernels, pack_sign

    g = torch.Generator().manual_seed(0)
    x = torch.where(torch.randn(batch, size, generator=g) >= 0, 1.0, -1.0)
    w = torch.where(torch.randn(size, size, generator=g) >= 0, 1.0, -1.0)
    xp, wp = pack_sign(x.numpy()), pack_sign(w.numpy())
    out = np.empty((batch, size), np.int32)
    xn = x.numpy()

    def eng() -> None:
        with kernels.KERNEL_LOCK:
            kernels.bgemm(xp, wp, size, out)

    def eng_pack() -> None:
        with kernels.KERNEL_LOCK:
            kernels.bgemm(pack_sign(xn), wp, size, out)

    wt = w.t()
    ts, te = _time_pair(lambda: x @ wt, eng, repeats)
    _, tp = _time_pair(lambda: None, eng_pack, max(3, repeats // 4))
    exact = bool(np.array_equal(out, (x @ wt).numpy().astype(np.int32)))
    macs = batch * size * size
    peak = popcount_peak(repeats)  # one core, per CPU-second
    wall_ratio = ts["min_s"] / te["min_s"]
    cpu_ratio = ts["cpu_s"] / max(te["cpu_s"], 1e-9)
    return {"size": size, "batch": batch, "torch_ms": ts["min_s"] * 1e3, "torch_median_ms": ts["median_s"] * 1e3,
            "engine_ms": te["min_s"] * 1e3, "engine_median_ms": te["median_s"] * 1e3,
            "engine_with_packing_ms": tp["min_s"] * 1e3,
            "wall_speedup": wall_ratio, "speedup_median": ts["median_s"] / te["median_s"],
            "speedup_with_packing": ts["min_s"] / tp["min_s"],
            "torch_cpu_ms": ts["cpu_s"] * 1e3, "engine_cpu_ms": te["cpu_s"] * 1e3, "cpu_time_speedup": cpu_ratio,
            # the headline: the smaller of the wall-clock and the CPU-time ratio (conservative on a
            # shared machine, where each of them can favour one side)
            "speedup": min(wall_ratio, cpu_ratio),
            "torch_gmacs": macs / ts["min_s"] / 1e9, "engine_gmacs": macs / te["min_s"] / 1e9,
            "torch_gmacs_per_core": macs / ts["cpu_s"] / 1e9, "engine_gmacs_per_core": macs / te["cpu_s"] / 1e9,
            "popcount_peak_gmacs_per_core": peak / 1e9,
            "fraction_of_popcount_peak": macs / te["cpu_s"] / peak,
            "weights_float32_bytes": 4 * size * size, "weights_packed_bytes": int(wp.nbytes),
            "weights_ratio": 4 * size * size / wp.nbytes, "exact": exact}


def bench_model(args: argparse.Namespace, input_shape: tuple[int, ...] | None) -> dict[str, Any]:
    import numpy as np
    import torch

    from stbin.deploy import binary_weight_bytes, compile_model, float32_bytes, to_bytes
    from stbin.nn import eval_mode

    if args.checkpoint is not None:
        from stbin.training import load_checkpoint, load_model

        ckpt = load_checkpoint(args.checkpoint)
        model = load_model(ckpt)
        name = ckpt["model"]["name"]
        source = str(args.checkpoint)
    else:
        from stbin.models import build_model

        torch.manual_seed(0)
        model = build_model("sbn_mlp", hidden=(args.hidden,) * 3)
        name, source = "sbn_mlp", f"demo network 784-{args.hidden}-{args.hidden}-{args.hidden}-10 (random weights)"
    model.eval()
    net = compile_model(model, input_shape)
    shape = tuple(net.meta["input_shape"])
    g = torch.Generator().manual_seed(1)
    xb = torch.randn((args.batch, *shape), generator=g)
    x1 = xb[:1].clone()
    xb_np, x1_np = xb.numpy(), x1.numpy()

    def torch_run(x: torch.Tensor) -> Callable[[], Any]:
        def f() -> Any:
            with torch.no_grad():
                return model(x)
        return f

    with eval_mode(model, "mode"):
        tt, te = _time_pair(torch_run(xb), lambda: net.predict(xb_np), args.repeats)
        lt, le = _time_pair(torch_run(x1), lambda: net.predict(x1_np), args.repeats * 5)
        with torch.no_grad():
            same = bool(np.array_equal(model(xb).argmax(-1).numpy(), net.predict(xb_np).argmax(-1)))
    f32 = float32_bytes(model)
    bf, bp = binary_weight_bytes(model)
    b = args.batch
    return {"name": name, "source": source, "batch": b,
            "torch_batch_ms": tt["min_s"] * 1e3, "engine_batch_ms": te["min_s"] * 1e3,
            "torch_images_per_s": b / tt["min_s"], "engine_images_per_s": b / te["min_s"],
            "throughput_wall_speedup": tt["min_s"] / te["min_s"],
            "torch_batch_cpu_ms": tt["cpu_s"] * 1e3, "engine_batch_cpu_ms": te["cpu_s"] * 1e3,
            "throughput_cpu_time_speedup": tt["cpu_s"] / max(te["cpu_s"], 1e-9),
            "throughput_speedup": min(tt["min_s"] / te["min_s"], tt["cpu_s"] / max(te["cpu_s"], 1e-9)),
            "torch_latency_ms": lt["min_s"] * 1e3, "engine_latency_ms": le["min_s"] * 1e3,
            "latency_wall_speedup": lt["min_s"] / le["min_s"],
            "latency_cpu_time_speedup": lt["cpu_s"] / max(le["cpu_s"], 1e-9),
            "latency_speedup": min(lt["min_s"] / le["min_s"], lt["cpu_s"] / max(le["cpu_s"], 1e-9)),
            "float32_bytes": f32, "packed_bytes": net.nbytes(), "file_bytes": len(to_bytes(net)),
            "memory_ratio": f32 / net.nbytes(),
            "binary_weights_float32_bytes": bf, "binary_weights_packed_bytes": bp,
            "binary_weights_ratio": (bf / bp) if bp else None, "predictions_identical": same}


def run(args: argparse.Namespace) -> int:
    from stbin._extras import require_extra
    require_extra("numba", extra="deploy", purpose="stbin bench-inference")
    from stbin.deploy import jit_plan
    jit_plan.inline_integers()  # $STBIN_INLINE_INTEGERS checked before any work
    for name in ("hidden", "batch", "linear_size", "linear_batch", "repeats", "threads", "net_batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    from stbin.cli.bench_networks import bench_network, parse_networks, print_networks, ratio_text, require_onnxruntime

    if not (args.burst_ms >= 0 and args.burst_ms <= 1000):
        raise ValueError(f"--burst-ms must be in [0, 1000], got {args.burst_ms}")
    if not (args.width > 0 and args.width <= 4):
        raise ValueError(f"--width must be in (0, 4], got {args.width}")
    from stbin.cli.shapes import parse_shape

    input_shape = parse_shape(args.input_shape) if args.input_shape is not None else None
    networks = parse_networks(args.networks)
    if networks:
        require_onnxruntime()
    import torch

    from stbin.deploy import kernels

    torch.set_num_threads(args.threads)
    if args.threads > kernels.numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"--threads {args.threads} exceeds numba's maximum {kernels.numba.config.NUMBA_NUM_THREADS} "
                         "(set NUMBA_NUM_THREADS)")
    kernels.set_threads(args.threads)
    result: dict[str, Any] = {
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "numba": kernels.numba.__version__}
    if not args.skip_linear:
        lin = bench_linear(args.linear_size, args.linear_batch, args.repeats, args.threads)
        result["linear"] = lin
        result["linear_speedup"] = lin["speedup"]
        result["linear_4096_speedup"] = lin["speedup"] if args.linear_size == 4096 else None
    else:
        result["linear_4096_speedup"] = None
    result["model"] = bench_model(args, input_shape)
    result["burst_ms"] = args.burst_ms
    result["networks"] = {n: bench_network(n, args.width, sorted({1, args.net_batch}), args.repeats, args.threads,
                                           args.burst_ms) for n in networks}
    result["threading_layer"] = kernels.numba.threading_layer()
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
        return 0
    print(f"stbin bench-inference: {args.threads} threads, torch {result['torch']}, numba {result['numba']} "
          f"({result['threading_layer']}), load average {[round(v, 2) for v in result['load_average'] or []]}")
    if "linear" in result:
        lin = result["linear"]
        print(f"binary linear {lin['size']}x{lin['size']}, batch {lin['batch']}:")
        print(f"  torch float32 {lin['torch_ms']:9.3f} ms  ({lin['torch_gmacs']:.1f} GMAC/s)")
        print(f"  engine        {lin['engine_ms']:9.3f} ms  ({lin['engine_gmacs']:.1f} GMAC/s binary)")
        print(f"  {ratio_text(1.0, lin['speedup'])}  (wall clock: {ratio_text(1.0, lin['wall_speedup'])}, CPU time: "
              f"{ratio_text(1.0, lin['cpu_time_speedup'])}; with input packing: "
              f"{ratio_text(1.0, lin['speedup_with_packing'])})")
        print(f"  per core: engine {lin['engine_gmacs_per_core']:.0f} GMAC/s, torch {lin['torch_gmacs_per_core']:.1f} "
              f"GMAC/s; XOR-popcount roofline {lin['popcount_peak_gmacs_per_core']:.0f} GMAC/s "
              f"-> the GEMM reaches {100 * lin['fraction_of_popcount_peak']:.0f}%")
        print(f"  weights {lin['weights_float32_bytes']} B float32 -> {lin['weights_packed_bytes']} B packed "
              f"({lin['weights_ratio']:.1f}x smaller); exact: {lin['exact']}")
    m = result["model"]
    print(f"model {m['source']}:")
    print(f"  throughput (batch {m['batch']}): torch {m['torch_images_per_s']:.0f}/s, engine "
          f"{m['engine_images_per_s']:.0f}/s  ({ratio_text(1.0, m['throughput_speedup'])}; wall clock: "
          f"{ratio_text(1.0, m['throughput_wall_speedup'])}, CPU time: {ratio_text(1.0, m['throughput_cpu_time_speedup'])})")
    print(f"  latency (batch 1): torch {m['torch_latency_ms']:.3f} ms, engine {m['engine_latency_ms']:.3f} ms  "
          f"({ratio_text(1.0, m['latency_speedup'])}; wall clock: {ratio_text(1.0, m['latency_wall_speedup'])}, "
          f"CPU time: {ratio_text(1.0, m['latency_cpu_time_speedup'])})")
    print(f"  memory: float32 {m['float32_bytes']} B -> packed {m['packed_bytes']} B ({m['memory_ratio']:.1f}x); "
          f"binary weights {m['binary_weights_float32_bytes']} B -> {m['binary_weights_packed_bytes']} B "
          f"({(m['binary_weights_ratio'] or 0):.1f}x)")
    print(f"  predictions identical on the benchmark batch: {m['predictions_identical']}")
    if result["networks"]:
        print_networks(result["networks"])
    return 0
