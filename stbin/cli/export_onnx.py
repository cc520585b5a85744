"""``stbin export CKPT model.onnx --format onnx``: the mode network as a standard ONNX graph."""

from __future__ import annotations

import argparse
from typing import Any

from stbin._extras import require_extra


def input_shape_of(spec: dict[str, Any]) -> tuple[int, ...] | None:
    """The input shape a checkpoint's model was built for (from its keyword arguments), if known."""
    kw = spec.get("kwargs", {}) or {}
    if isinstance(kw.get("in_channels"), int) and isinstance(kw.get("image_size"), int):
        return (kw["in_channels"], kw["image_size"], kw["image_size"])
    if isinstance(kw.get("in_features"), int):
        return (kw["in_features"],)
    return None


def run_onnx(args: argparse.Namespace, shape: tuple[int, ...] | None) -> int:
    from stbin.deploy.onnx import check_onnx_available

    check_onnx_available()
    if args.verify:
        require_extra("onnxruntime", extra="onnx", purpose="--verify with --format onnx")

    import os

    import numpy as np
    import torch

    from stbin.cli.export import verification_inputs
    from stbin.deploy import to_onnx
    from stbin.nn import eval_mode
    from stbin.training import load_checkpoint, load_model

    ckpt = load_checkpoint(args.checkpoint)
    shape = shape or input_shape_of(ckpt["model"])
    if shape is None:
        raise ValueError("--input-shape is needed: the checkpoint does not say the model's input shape")
    model = load_model(ckpt)
    to_onnx(model, torch.zeros((2, *shape)), args.out)
    print(f"stbin export: {args.checkpoint} -> {args.out} ({os.path.getsize(args.out)} bytes, ONNX opset 17, "
          "float emulation of the mode network; .stbn is the true-binary format)")
    if args.verify:
        import onnxruntime as ort

        x, what = verification_inputs(shape, args.verify_samples)
        x = x.reshape(len(x), *shape).float()
        sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        got = np.concatenate([sess.run(None, {name: x[i:i + 1000].numpy()})[0] for i in range(0, len(x), 1000)])
        with torch.no_grad(), eval_mode(model, "mode"):
            ref = model(x).argmax(-1).numpy()
        diff = int(np.sum(got.argmax(-1) != ref))
        print(f"verify on {what}: {len(x) - diff}/{len(x)} onnxruntime predictions identical to PyTorch (mode)")
        if diff:
            return 1
    return 0
