"""The compiled loops a network's execution plan calls, with their exact arguments (this folder's helper).

``workload(network, batch)`` builds a workload of ``stbin bench-inference`` (its binary network, batch norms
randomised, compiled) and a seeded input batch; ``recorded_steps(net, x)`` walks the plan step by step with the
kernels recording (as ``stbin.deploy.jit_plan`` does), runs each recorded loop for real (the next step's input)
and yields ``(run_step, calls)``: a callable that runs the step as a whole, and its ``(loop, arguments)`` records
(empty for a step without kernels: a view, a torch or BLAS call).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch


def workload(network: str, batch: int) -> tuple[Any, Any]:
    """(compiled net, float32 input batch) of the ``stbin bench-inference`` workload ``network``, seeded."""
    from stbin.cli.bench_networks import BINARY, NETWORKS, _randomise_bn
    from stbin.deploy import compile_model
    from stbin.models import build_model

    name, kwargs, shape = NETWORKS[network]
    torch.manual_seed(0)
    model = build_model(name, **kwargs, **BINARY).eval()
    _randomise_bn(model, 0)
    net = compile_model(model, shape)
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(1)).numpy()
    net.predict(x)  # builds the plan
    return net, x


def recorded_steps(net: Any, x: Any) -> Iterator[tuple[Callable[[], Any], list]]:
    """Per step of ``net``'s plan for ``x``: (the step run as a whole on its input, its recorded kernel calls)."""
    from stbin.deploy import kernels
    from stbin.deploy.ops import RunContext

    ctx, h = RunContext(net), x
    for step in net._plan:
        with kernels.recording() as rec:
            y = step(h, ctx)
        for loop, a in rec.calls:
            loop(*a)  # for real: the next step's input
        yield (lambda step=step, h=h: step(h, ctx)), rec.calls
        h = y
