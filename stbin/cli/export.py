"""``stbin export CHECKPOINT OUT``: write a true-binary deployable model (.stbn), or ONNX.

The binary layers' weights are packed one bit per weight; each batch norm with the sign
after it is folded into exact integer thresholds; the first and last (real-valued) layers
stay float32. The file is versioned and checksummed (see docs/deploy.md); run it with
``stbin.deploy.load(OUT)(x)``. ``--verify`` compares the predictions of the exported file
with the PyTorch model evaluated in mode (on the MNIST test set for 784-input models,
else on random inputs) and exits with 1 if any differs.

``--format onnx`` writes the mode network as a standard ONNX graph instead (float
emulation for interoperability: ±1 weights as float constants, sign as Where; needs the
onnx package; ``--verify`` then needs onnxruntime).

``--input-grid MEAN,STD`` declares that the inputs are 8-bit pixels normalised as
``(pixel / 255 - MEAN) / STD`` (MNIST: 0.1307,0.3081): a first layer with binary weights then
runs bit-serially on exact integer dot products (see docs/deploy.md), and every input is
checked to lie on that grid.
"""

from __future__ import annotations

import argparse

from stbin.cli.shapes import check_input_shape, parse_shape, recorded_shape


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a checkpoint to a bit-packed deployable model (.stbn)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (stbin.training.save_checkpoint)")
    p.add_argument("out", help="output file, e.g. model.stbn")
    p.add_argument("--input-shape", default=None,
                   help="shape of one input sample, e.g. 1,28,28 (needed for convolutional models)")
    p.add_argument("--verify", action="store_true",
                   help="check that the exported model predicts exactly as the PyTorch model (mode)")
    p.add_argument("--format", choices=("stbn", "onnx"), default="stbn",
                   help="stbn: true-binary bit-packed file (default); onnx: float-emulated ONNX graph")
    p.add_argument("--input-grid", default=None, metavar="MEAN,STD",
                   help="inputs are 8-bit pixels normalised as (pixel/255 - MEAN)/STD, e.g. 0.1307,0.3081 for "
                        "MNIST: a binary-weight first layer then runs bit-serially (exact integer products)")
    p.add_argument("--verify-samples", type=int, default=2000,
                   help="random inputs for --verify when the model is not an MNIST model (default: 2000)")
    return p


def parse_input_grid(text: str) -> dict[str, float]:
    """The grid of ``--input-grid MEAN,STD`` (:func:`stbin.deploy.input_grid.input_grid_for`).

    >>> parse_input_grid("0.5,0.25")
    {'scale': 0.01568627450980392, 'offset': -2.0}
    """
    import math

    from stbin.deploy.input_grid import input_grid_for

    try:
        mean, std = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--input-grid must be MEAN,STD (two numbers, e.g. 0.1307,0.3081), got {text!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"--input-grid needs a finite MEAN and a finite STD > 0, got {text!r}")
    return input_grid_for(mean, std)


def verification_inputs(input_shape, n_random: int, grid: dict[str, float] | None = None):
    """MNIST test images (normalised as ``stbin train`` does) for MNIST-shaped models without a declared
    grid, else random inputs: N(0, 1), or uniform 8-bit pixels on the declared ``grid``."""
    import torch

    shape = tuple(input_shape)
    g = torch.Generator().manual_seed(0)
    if grid is not None:
        q = torch.randint(0, 256, (n_random, *shape), generator=g, dtype=torch.int32)
        x = (grid["offset"] + grid["scale"] * q.double()).float()
        return x, f"{n_random} random 8-bit inputs on the declared grid"
    if int(torch.tensor(shape).prod()) == 784 and shape in ((784,), (1, 28, 28), (28, 28)):
        from stbin.data import load_mnist
        from stbin.data.datasets import DATASETS

        info = DATASETS.get("mnist")
        xte, _ = load_mnist("test")
        return (xte.float() / 255.0 - info.mean[0]) / info.std[0], "the MNIST test set"
    return torch.randn((n_random, *shape), generator=g), f"{n_random} random N(0, 1) inputs"


def run(args: argparse.Namespace) -> int:
    import os

    shape = parse_shape(args.input_shape) if args.input_shape is not None else None
    if args.verify_samples < 1:
        raise ValueError(f"--verify-samples must be >= 1, got {args.verify_samples}")
    grid = parse_input_grid(args.input_grid) if args.input_grid is not None else None
    if grid is not None and args.format == "onnx":
        raise ValueError("--input-grid applies to the .stbn format only (ONNX computes in float32)")
    if os.path.isdir(args.out):
        raise ValueError(f"{args.out} is a directory; give a file name such as model.{args.format}")
    if args.format == "onnx":
        from stbin.cli.export_onnx import run_onnx

        return run_onnx(args, shape)
    if args.verify:
        from stbin._extras import require_extra
        require_extra("numba", extra="deploy", purpose="stbin export --verify")
        from stbin.deploy import jit_plan
        jit_plan.inline_integers()  # $STBIN_INLINE_INTEGERS checked before any work

    from stbin.deploy import binary_weight_bytes, export_checkpoint
    from stbin.training import load_checkpoint, load_model

    ckpt = load_checkpoint(args.checkpoint)
    # [plugins] the shape the model was built for
    recorded = recorded_shape(ckpt["model"].get("kwargs", {}).get("input_shape"), args.checkpoint)
    shape = shape or recorded
    model = load_model(ckpt)  # the checkpoint's model and weights checked before anything is written
    if shape is not None:
        check_input_shape(model, shape, f"--input-shape {args.input_shape}" if args.input_shape else
                          f"the input shape {','.join(map(str, shape))} recorded in {args.checkpoint}")
    net = export_checkpoint(ckpt, args.out, shape, input_grid=grid)
    f32 = net.meta.get("float32_bytes", 0)
    bf, bp = binary_weight_bytes(model)
    size = os.path.getsize(args.out)
    print(f"stbin export: {args.checkpoint} -> {args.out} ({size} bytes, format version 1)")
    for op in net.ops:
        arrays = ", ".join(f"{k}{tuple(v.shape)}" for k, v in op.arrays.items())
        print(f"  {op.type:10s} {op.nbytes():>10d} B  {arrays}")
    print(f"model: {f32} B as float32 -> {net.nbytes()} B packed ({f32 / max(1, net.nbytes()):.1f}x smaller)")
    if bf:
        print(f"binary weights: {bf} B as float32 -> {bp} B packed ({bf / bp:.1f}x smaller)")
    if args.verify:
        import numpy as np
        import torch

        from stbin.deploy import load
        from stbin.nn import eval_mode

        x, what = verification_inputs(net.meta["input_shape"], args.verify_samples, grid)
        loaded = load(args.out)
        with torch.no_grad(), eval_mode(model, "mode"):
            ref = model(x).argmax(-1).numpy()
        got = loaded.predict(x, batch_size=1000).argmax(-1)
        diff = int(np.sum(got != ref))
        print(f"verify on {what}: {len(x) - diff}/{len(x)} predictions identical to PyTorch (mode)")
        if diff:
            return 1
    return 0
