#!/usr/bin/env python
"""One script to check stbin on a CUDA machine; on a machine without CUDA it says so and exits 0.

On CUDA it runs, in order, and stops at the first failure (exit 1):

1. the CUDA variants of the estimator and layer tests
   (``pytest tests/estimators tests/nn -k cuda``: closed-form backward, sampled
   frequencies, seeding, deterministic modes equal to CPU, layer training steps);
2. a few training steps of every preset model on CUDA under automatic mixed precision
   (``torch.autocast`` float16 with a ``GradScaler``, and bfloat16), with the preset's
   optimizer and latent-weight rule; every loss must be finite and the weights must change;
3. the layer benchmark on CUDA (``benchmarks/bench_layers.py --device cuda --quick``, or
   the full run with ``--full-bench``).

Usage::

    python benchmarks/gpu_check.py [--steps 3] [--full-bench] [--skip-tests] [--skip-bench]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd: list[str]) -> bool:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT) == 0


def preset_amp_steps(steps: int, device: str = "cuda", dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16),
                     presets: list[str] | None = None) -> list[str]:
    """Train each preset's model (default: every preset) for ``steps`` AMP steps; the failures as messages.

    ``device`` is ``"cuda"`` here; the test suite runs the same code on ``"cpu"`` with
    bfloat16, so that the script's calls into stbin stay valid on machines without a GPU.
    """
    sys.path.insert(0, ROOT)
    import torch.nn.functional as F  # noqa: PLC0415

    from stbin.cli.summary import INPUT_SHAPES  # noqa: PLC0415
    from stbin.models import build_model  # noqa: PLC0415
    from stbin.training.presets import get_preset, preset_names  # noqa: PLC0415
    from stbin.training.trainer import build_optimizer, model_kwargs_for  # noqa: PLC0415

    failures = []
    for preset in preset_names() if presets is None else presets:
        cfg = get_preset(preset)
        shape = INPUT_SHAPES[cfg.data.name]
        for amp_dtype in dtypes:
            torch.manual_seed(0)
            name, kw = model_kwargs_for(cfg, shape, 10)
            model = build_model(name, **kw).to(device).train()
            opt, _ = build_optimizer(model, cfg)
            scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)
            x = torch.randn(16, *shape, device=device)
            y = torch.randint(10, (16,), device=device)
            before = [p.detach().clone() for p in model.parameters()]
            t0 = time.perf_counter()
            losses = []
            for _ in range(steps):
                with torch.autocast(device, dtype=amp_dtype):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
            if device == "cuda":
                torch.cuda.synchronize()
            changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
            ok = all(math.isfinite(v) for v in losses) and changed
            print(f"  {preset:<20} {str(amp_dtype):<15} losses {', '.join(f'{v:.3f}' for v in losses)}  "
                  f"{(time.perf_counter() - t0) / steps * 1e3:.1f} ms/step  {'ok' if ok else 'FAILED'}", flush=True)
            if not ok:
                failures.append(f"{preset} ({amp_dtype}): losses {losses}, weights changed: {changed}")
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3, help="AMP training steps per preset (default 3)")
    p.add_argument("--full-bench", action="store_true", help="the full layer benchmark instead of --quick")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); nothing to check on this machine.")
        return 0
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    py = sys.executable
    if not args.skip_tests and not run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                                        "tests/estimators", "tests/nn", "-k", "cuda"]):
        print("gpu_check: the CUDA tests failed")
        return 1
    print("AMP training steps of every preset on CUDA:")
    failures = preset_amp_steps(args.steps)
    if failures:
        print("gpu_check: AMP training failed for " + "; ".join(failures))
        return 1
    bench = [py, os.path.join("benchmarks", "bench_layers.py"), "--device", "cuda", "--no-bitorch"]
    if not args.skip_bench and not run(bench + ([] if args.full_bench else ["--quick"])):
        print("gpu_check: the layer benchmark failed")
        return 1
    print("gpu_check: all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
