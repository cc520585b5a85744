"""Where a compiled plan's time goes: each compiled loop that the plan of a network calls, timed on its own
with the exact arguments the plan passes it (recorded with ``kernels.recording()``, as ``jit_plan`` does),
minimum over repeats, in microseconds. Shows which kernels a batch-1 network spends its time in.

    PYTHONPATH=. python benchmarks/bench_plan_kernels.py --network resnet20 --batch 1
    PYTHONPATH=. python benchmarks/bench_plan_kernels.py --network mlp --batch 64
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="resnet20", help="a workload of stbin bench-inference")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="engine threads (1: the serial twins, as at batch 1)")
    args = ap.parse_args()
    from stbin.cli.bench_networks import BINARY, NETWORKS, _randomise_bn
    from stbin.deploy import compile_model, kernels
    from stbin.deploy.ops import RunContext
    from stbin.models import build_model

    kernels.set_threads(args.threads)
    name, kwargs, shape = NETWORKS[args.network]
    torch.manual_seed(0)
    model = build_model(name, **kwargs, **BINARY).eval()
    _randomise_bn(model, 0)
    net = compile_model(model, shape)
    x = torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(1)).numpy()
    net.predict(x)  # builds the plan
    ctx, h, rows = RunContext(net), x, []
    for step in net._plan:
        with kernels.recording() as rec:
            y = step(h, ctx)
        if not rec.calls:  # a view (save, flatten) or a Python step (torch, BLAS): timed as a whole
            rows.append(("(step without kernels)", min(timeit.repeat(lambda: step(h, ctx), number=10, repeat=5)) / 10))
            h = y
            continue
        for loop, a in rec.calls:
            loop(*a)  # for real: the next step's input
            rows.append((loop.py_func.__name__, min(timeit.repeat(lambda: loop(*a), number=20, repeat=5)) / 20))
        h = y
    total = sum(t for _, t in rows)
    print(f"{args.network} at batch {args.batch}, {args.threads} thread(s): {total * 1e6:.0f} us in {len(rows)} calls")
    for n, t in rows:
        print(f"  {n:32s} {t * 1e6:9.1f} us  {100 * t / total:5.1f}%")
    assert np.isfinite(total)


if __name__ == "__main__":
    main()
