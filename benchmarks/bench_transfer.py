#!/usr/bin/env python
"""Float-weight transfer on MNIST: binarized pretrained LeNet-5 against random initialisation.

Protocol (all on real MNIST, 60k train / 10k test):

1. a plain-PyTorch float LeNet-5 (Conv-MaxPool-BN-ReLU x2, FC-BN-ReLU x2, FC) is trained
   for ``--float-epochs`` epochs (Adam);
2. **transfer**: ``stbin.nn.binarize`` converts it (first conv and last FC real-valued,
   the others Bernoulli-weight layers with logistic noise, ``s_w = --weight-noise-scale``;
   every ReLU a logistic stochastic sign); the latent weights come from the float weights
   (theta = 2 s_w atanh(W / c), c the per-channel 0.99 quantile of |W|), the real layers and
   batch norms are copied;
3. **random**: the same binary network converted from a fresh, untrained float LeNet-5
   with ``transfer=False`` (latent weights at their random initialisation);
4. both are evaluated after 0 epochs (as converted, and after re-estimating the batch-norm
   statistics on 50 training batches, which is where fine-tuning starts), then fine-tuned
   with the same optimizer (Adam, ``--lr``; latent weights at ``--latent-lr``, mirror
   descent via ``LatentWeightRule``) and evaluated after 1 and 3 epochs in mode, mean and
   a 10-sample ensemble.

Usage::

    nice python benchmarks/bench_transfer.py --markdown             # the table in docs/own-models.md
    python benchmarks/bench_transfer.py --quick                     # 2000 training images (smoke test)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stbin.data import load_dataset
from stbin.nn import binarize, ensemble_predict, eval_mode
from stbin.optim import LatentWeightRule, split_parameters


def lenet5() -> nn.Sequential:
    """The float LeNet-5 as a user would write it: the one of examples/binarize_your_model.py."""
    path = Path(__file__).resolve().parents[1] / "examples" / "binarize_your_model.py"
    spec = importlib.util.spec_from_file_location("binarize_your_model", path)
    example = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(example)  # type: ignore[union-attr]
    return example.float_lenet5()


def mnist(n_train: int | None) -> tuple[torch.Tensor, ...]:
    """Normalised MNIST (the training pipeline's constants): train images, labels, test images, labels."""
    d = load_dataset("mnist", train_limit=n_train)
    return d.prepare(d.x_train), d.y_train, d.prepare(d.x_test), d.y_test


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int,
                gen: torch.Generator) -> None:
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, how: str, k: int = 10) -> float:
    correct = 0
    for i in range(0, len(x), 1000):
        xb = x[i:i + 1000]
        if how == "ensemble":
            out = ensemble_predict(model, xb, k)
        else:
            with eval_mode(model, how):
                out = model(xb)
        correct += int((out.argmax(-1) == y[i:i + 1000]).sum())
    return correct / len(x)


@torch.no_grad()
def reestimate_bn(model: nn.Module, x: torch.Tensor, batches: int, batch: int, gen: torch.Generator) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(batches):
        model(x[perm[i * batch:(i + 1) * batch]])
    for m, mom in zip(bns, saved):
        m.momentum = mom


def evaluate(model: nn.Module, data: tuple[torch.Tensor, ...], k: int) -> dict[str, float]:
    _, _, xte, yte = data
    return {how: accuracy(model, xte, yte, how, k) for how in ("mode", "mean", "ensemble")}


def run_arm(name: str, model: nn.Module, data: tuple[torch.Tensor, ...], args: argparse.Namespace,
            log: list[dict]) -> None:
    xtr, ytr = data[0], data[1]
    gen = torch.Generator().manual_seed(args.seed + 1)
    log.append({"arm": name, "epochs": "0 (as converted)", **evaluate(model, data, args.ensemble)})
    reestimate_bn(model, xtr, 50, args.batch, gen)
    log.append({"arm": name, "epochs": "0 (BN re-estimated)", **evaluate(model, data, args.ensemble)})
    latent, other = split_parameters(model)
    opt = torch.optim.Adam([{"params": latent, "lr": args.latent_lr}, {"params": other, "lr": args.lr}])
    LatentWeightRule(model).attach(opt)
    for epoch in range(1, max(args.checkpoints) + 1):
        t = time.perf_counter()
        train_epoch(model, opt, xtr, ytr, args.batch, gen)
        if epoch in args.checkpoints:
            log.append({"arm": name, "epochs": str(epoch), **evaluate(model, data, args.ensemble),
                        "epoch_s": round(time.perf_counter() - t, 1)})
        print(f"  {name}: epoch {epoch} done ({time.perf_counter() - t:.0f} s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float-epochs", type=int, default=2)
    p.add_argument("--checkpoints", type=int, nargs="+", default=[1, 3], help="fine-tuning epochs to evaluate at")
    p.add_argument("--weight-noise-scale", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the real-valued parameters")
    p.add_argument("--latent-lr", type=float, default=3e-3, help="Adam lr of the latent weights")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--ensemble", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2000 training images (smoke test, seconds)")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--markdown", action="store_true", help="print the Markdown table")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = mnist(2000 if args.quick else None)
    torch.manual_seed(args.seed)
    float_net = lenet5()
    opt = torch.optim.Adam(float_net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for _ in range(args.float_epochs):
        train_epoch(float_net, opt, data[0], data[1], args.batch, gen)
    float_net.eval()
    float_acc = accuracy(float_net, data[2], data[3], "mode")
    print(f"float LeNet-5 after {args.float_epochs} epochs: {float_acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    example = data[0][:2]
    opts = {"weights": "bernoulli", "weight_noise": "logistic", "weight_noise_scale": args.weight_noise_scale,
            "activation": "stochastic"}
    torch.manual_seed(args.seed + 2)
    transferred = binarize(float_net, example, **opts)
    print(transferred.binarize_report)
    torch.manual_seed(args.seed + 2)
    random_init = binarize(lenet5(), example, transfer=False, **opts)
    log: list[dict] = []
    for name, model in (("transfer", transferred), ("random init", random_init)):
        torch.manual_seed(args.seed + 3)
        run_arm(name, model, data, args, log)
    out = {"float_accuracy": float_acc, "args": vars(args), "rows": log}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.markdown:
        print(f"\nfloat LeNet-5 ({args.float_epochs} epochs): {100 * float_acc:.2f}% test accuracy\n")
        print("| init | fine-tuning epochs | mode | mean | ensemble (K=10) |")
        print("|---|---|--:|--:|--:|")
        for r in log:
            print(f"| {r['arm']} | {r['epochs']} | {100 * r['mode']:.2f}% | {100 * r['mean']:.2f}% | "
                  f"{100 * r['ensemble']:.2f}% |")
    else:
        for r in log:
            print(r)


if __name__ == "__main__":
    main()
