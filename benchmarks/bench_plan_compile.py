"""How long the engine's compiled plan takes to compile, cold and from numba's cache, with the integers of the
recorded calls inlined as literals (``stbin.deploy.jit_plan.INLINE_INTEGERS = True``, the default) or passed as
int64 values (``False``), and what each way costs in latency.

For each workload of ``stbin bench-inference`` (random weights, batch norms randomised) and each way, two child
processes run on their own empty numba and plan caches (``NUMBA_CACHE_DIR`` and ``STBIN_PLAN_CACHE`` in a
temporary folder): the **cold** one times the first ``COMPILE_AFTER - 1`` calls (op by op: the engine's loops
compile) and the ``COMPILE_AFTER``-th call (the plan compiles: the generated function and the loops it calls, once
per distinct set of literal integers); the **warm** one, started after it on the same caches, times the same calls
(everything loaded from disk), then the latency (median of ``--repeats`` bursts of ``--burst`` calls). The outputs
of both ways must be identical, bit for bit. ``loops`` counts the compiled versions of the loops the plan calls.

    PYTHONPATH=. python benchmarks/bench_plan_compile.py
    PYTHONPATH=. python benchmarks/bench_plan_compile.py --networks resnet20 --batch 1 --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench_training import _positive_int  # this folder's scripts

WAYS = {"inline": True, "int64": False}  # way -> jit_plan.INLINE_INTEGERS


def child(network: str, way: str, batch: int, threads: int, repeats: int, burst: int) -> dict[str, Any]:
    """Timings of one process (its caches are whatever NUMBA_CACHE_DIR and STBIN_PLAN_CACHE hold)."""
    start = time.perf_counter()
    import torch

    from _plan_calls import workload  # this folder's helper
    from stbin.deploy import jit_plan, kernels
    from stbin.deploy.engine import COMPILE_AFTER

    jit_plan.INLINE_INTEGERS = WAYS[way]
    kernels.set_threads(threads)
    torch.set_num_threads(threads)
    imported = time.perf_counter()
    net, x = workload(network, batch)  # its first call
    for _ in range(COMPILE_AFTER - 2):
        net.predict(x)
    op_by_op = time.perf_counter()
    y = net.predict(x)  # the COMPILE_AFTER-th: the plan compiles
    compiled = time.perf_counter()
    plan = net._compiled.get((x.shape, kernels.get_threads()))
    if plan is None or not getattr(plan, "sources", None):  # op by op, or a batch split over the threads
        raise SystemExit(f"{network}: no single compiled plan for batch {batch} on {threads} threads")
    loops = {id(v): v for item in plan.items if item[0] == "segment"
             for k, v in item[1].py_func.__globals__.items() if k.startswith("k") and hasattr(v, "overloads")}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(burst):
            net.predict(x)
        times.append((time.perf_counter() - t) / burst)
    return {"import_s": imported - start, "op_by_op_s": op_by_op - imported, "plan_s": compiled - op_by_op,
            "latency_ms": statistics.median(times) * 1e3, "loops": sum(len(v.overloads) for v in loops.values()),
            "single_call": bool(plan.single), "digest": hashlib.sha256(y.tobytes()).hexdigest()[:16]}


def _ways(text: str) -> list[str]:
    ways = text.split(",")
    if any(w not in WAYS for w in ways):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(WAYS)}, got {text!r}")
    return ways


def _networks(text: str) -> list[str]:
    from stbin.cli.bench_networks import NETWORKS

    names = text.split(",")
    if any(n not in NETWORKS for n in names):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(NETWORKS)}, got {text!r}")
    return names


def _run_child(args: argparse.Namespace, network: str, way: str, cache: str) -> dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))  # this folder's helpers, then the caller's path
    env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(cache, "numba"),
           "STBIN_PLAN_CACHE": os.path.join(cache, "plans"),
           "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", network, way, "--batch", str(args.batch),
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--burst", str(args.burst)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{network} ({way}): the child process failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=_networks, default="mlp,binarynet_vgg,resnet20,bireal_resnet18")
    ap.add_argument("--ways", type=_ways, default="inline,int64", help="comma-separated: inline, int64")
    ap.add_argument("--batch", type=_positive_int, default=1)
    ap.add_argument("--threads", type=_positive_int, default=1)
    ap.add_argument("--repeats", type=_positive_int, default=9)
    ap.add_argument("--burst", type=_positive_int, default=50, help="calls per timed burst")
    ap.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    ap.add_argument("--child", nargs=2, metavar=("NETWORK", "WAY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.threads, args.repeats, args.burst)))
        return
    print(f"batch {args.batch}, {args.threads} threads; seconds of the first calls in a process with empty caches "
          f"(cold) and in the next one (warm)")
    print(f"{'workload':16s} {'way':6s} {'cold op-by-op':>13s} {'cold plan':>9s} {'warm plan':>9s} "
          f"{'latency ms':>10s} {'loops':>5s}  outputs")
    results: dict[str, Any] = {"batch": args.batch, "threads": args.threads, "networks": {}}
    for network in args.networks:
        rows = {}
        for way in args.ways:
            with tempfile.TemporaryDirectory(prefix="stbin-plan-compile-") as cache:
                cold = _run_child(args, network, way, cache)
                warm = _run_child(args, network, way, cache)
            rows[way] = {"cold": cold, "warm": warm}
            digests = {r[p]["digest"] for r in rows.values() for p in ("cold", "warm")}  # every way so far
            same = "identical" if len(digests) == 1 else "DIFFER"
            print(f"{network:16s} {way:6s} {cold['op_by_op_s']:13.1f} {cold['plan_s']:9.1f} {warm['plan_s']:9.2f} "
                  f"{warm['latency_ms']:10.3f} {cold['loops']:5d}  {same}")
            if same != "identical":
                raise SystemExit(f"{network}: the outputs of the ways differ")
        results["networks"][network] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
