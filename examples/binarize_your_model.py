#!/usr/bin/env python
"""Bring your own model: binarize a float CNN, fine-tune it, evaluate, export (MNIST).

1. a plain-PyTorch LeNet-5 (yours would do) is trained for one epoch in float;
2. ``stbin.nn.binarize`` turns it into a stochastic binary network: the first and the last
   weight layer (found by running one batch) stay real, the others get Bernoulli weights
   initialised from the float weights, every ReLU becomes a stochastic sign;
3. a plain PyTorch loop fine-tunes it (Adam + ``LatentWeightRule``: mirror-descent latent
   updates);
4. it is evaluated deterministically (mode), mean-field (mean) and as a 10-sample ensemble;
5. it is exported twice: ``.stbn`` (true-binary, bit-packed, XNOR-popcount engine) and ONNX
   (float emulation for other runtimes), and both are checked against PyTorch.

Run::

    python examples/binarize_your_model.py            # full MNIST, 47 s of CPU time single-threaded
    python examples/binarize_your_model.py --quick    # 2000 training images (STBIN_EXAMPLE_QUICK=1 too)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import stbin.deploy
from stbin.data import load_dataset
from stbin.nn import binarize, ensemble_predict, eval_mode
from stbin.optim import LatentWeightRule, split_parameters


def float_lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 16, 5), nn.MaxPool2d(2), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
        nn.Linear(400, 120), nn.BatchNorm1d(120), nn.ReLU(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.ReLU(),
        nn.Linear(84, 10))


def mnist(n_train: int | None, n_test: int | None) -> tuple[torch.Tensor, ...]:
    """Normalised MNIST (stbin's loader and constants): train images, labels, test images, labels."""
    d = load_dataset("mnist", train_limit=n_train, test_limit=n_test)
    return d.prepare(d.x_train), d.y_train, d.prepare(d.x_test), d.y_test


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    for idx in torch.randperm(len(x)).split(100):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, how: str, k: int) -> float:
    hits = 0
    for xb, yb in zip(x.split(1000), y.split(1000)):
        if how == "ensemble":
            out = ensemble_predict(model, xb, k)
        else:
            with eval_mode(model, how):
                out = model(xb)
        hits += int((out.argmax(-1) == yb).sum())
    return 100.0 * hits / len(x)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", default=bool(os.environ.get("STBIN_EXAMPLE_QUICK")),
                   help="2000 training / 1000 test images, 3-sample ensemble (a smoke test)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument("--out", default=None, help="folder for model.stbn and model.onnx (default: a temporary one)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    xtr, ytr, xte, yte = mnist(2000 if args.quick else None, 1000 if args.quick else None)
    k = 3 if args.quick else 10

    # 1. your float model, trained as usual
    model = float_lenet5()
    train_epoch(model, torch.optim.Adam(model.parameters(), lr=1e-3), xtr, ytr)
    print(f"float LeNet-5: {accuracy(model.eval(), xte, yte, 'mode', k):.2f}% test accuracy")

    # 2. one call: a stochastic binary network with the float weights transferred
    net = binarize(model, xtr[:2], weights="bernoulli", weight_noise_scale=0.1, activation="stochastic")
    print(net.binarize_report)

    # 3. a plain PyTorch fine-tuning loop; the latent weights get the mirror-descent update
    latent, other = split_parameters(net)
    opt = torch.optim.Adam([{"params": latent, "lr": 3e-3}, {"params": other, "lr": 1e-3}])
    LatentWeightRule(net).attach(opt)
    for _ in range(args.epochs):
        train_epoch(net, opt, xtr, ytr)

    # 4. three ways to evaluate a stochastic binary network
    results = {how: accuracy(net, xte, yte, how, k) for how in ("mode", "mean", "ensemble")}
    print(f"binary LeNet-5 after {args.epochs} epoch(s): mode {results['mode']:.2f}%, mean {results['mean']:.2f}%, "
          f"{k}-sample ensemble {results['ensemble']:.2f}%")

    # 5. export: true-binary .stbn, and ONNX for other runtimes; both must agree with PyTorch (mode)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        deployed = stbin.deploy.compile_model(net, (1, 28, 28))
        stbin.deploy.save(deployed, out / "model.stbn")
        stbin.deploy.to_onnx(net, xte[:2], out / "model.onnx")
        with torch.no_grad(), eval_mode(net, "mode"):
            ref = net(xte).argmax(-1)
        same_stbn = int((torch.from_numpy(stbin.deploy.load(out / "model.stbn").predict(xte).argmax(-1)) == ref).sum())
        results["stbn_identical"] = same_stbn / len(xte)
        print(f".stbn: {(out / 'model.stbn').stat().st_size} bytes, {same_stbn}/{len(xte)} predictions as PyTorch")
        try:
            import onnxruntime as ort
        except ImportError:
            print("ONNX written; install onnxruntime to check it")
        else:
            sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: xte.numpy()})[0]).argmax(-1)
            results["onnx_identical"] = int((got == ref).sum()) / len(xte)
            print(f"ONNX: {(out / 'model.onnx').stat().st_size} bytes, {int((got == ref).sum())}/{len(xte)} "
                  "onnxruntime predictions as PyTorch")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return results


if __name__ == "__main__":
    main()
