"""``stbin demo``: train a small stochastic binary MLP on the offline MNIST.

The network (all hidden units binary and stochastic, hidden weights Bernoulli)::

    784 -> Linear(784, H) -> BN -> StochasticSign(logistic)          first layer real-valued
        -> BinaryLinear(H, H, Bernoulli logistic weights) -> BN -> StochasticSign(logistic)
        -> BinaryLinear(H, H, Bernoulli logistic weights) -> BN -> StochasticSign(logistic)
        -> Linear(H, 10)                                             last layer real-valued

trained with the principled ST estimator (the activations' backward is (2/s) F'(a/s)) and
mirror-descent latent updates (the latent weights get dL/dw) under Adam. It prints the
test accuracy of the deterministic network (mode), the mean-field network (mean) and a
K-sample ensemble.
"""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="train a small stochastic binary MLP on MNIST (offline) and print its test accuracy",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width H (default: 512)")
    p.add_argument("--batch-size", type=int, default=100, help="mini-batch size (default: 100)")
    p.add_argument("--lr", type=float, default=3e-2, help="Adam learning rate (default: 3e-2)")
    p.add_argument("--noise", default="logistic", help="noise of activations and weights (default: logistic)")
    p.add_argument("--ensemble", type=int, default=10, help="samples in the ensemble evaluation (default: 10)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p


def build_model(hidden: int, noise: str):
    from stbin.models import build_model as build

    return build("sbn_mlp", hidden=(hidden, hidden, hidden), noise=noise, weight_noise=noise)


def run(args: argparse.Namespace) -> int:
    for name in ("epochs", "hidden", "batch_size", "ensemble"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")

    import torch
    from tqdm import tqdm

    from stbin.data import load_mnist
    from stbin.estimators import get_noise
    from stbin.nn import ensemble_predict, eval_mode
    from stbin.optim import LatentWeightRule

    get_noise(args.noise)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")
    if args.train_limit is not None:
        xtr, ytr = xtr[: args.train_limit], ytr[: args.train_limit]

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - 0.1307) / 0.3081

    xtr, xte = prep(xtr), prep(xte)
    model = build_model(args.hidden, args.noise)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    LatentWeightRule(model, gradient="mirror").attach(opt)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * -(-len(xtr) // args.batch_size))
    loss_fn = torch.nn.CrossEntropyLoss()
    print(f"stbin demo: stochastic binary MLP 784-{args.hidden}-{args.hidden}-{args.hidden}-10 "
          f"({args.noise} noise) on MNIST, {len(xtr)} training images, {args.epochs} epochs")
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr))
        bar = tqdm(range(0, len(xtr), args.batch_size), desc=f"epoch {epoch}/{args.epochs}", leave=False,
                   disable=None)
        total, n = 0.0, 0
        for i in bar:
            idx = perm[i: i + args.batch_size]
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(idx), n + len(idx)
            bar.set_postfix(loss=f"{total / n:.4f}")
        print(f"epoch {epoch}: training loss {total / n:.4f}")

    def accuracy(logits: torch.Tensor) -> float:
        return (logits.argmax(-1) == yte).float().mean().item() * 100

    with torch.no_grad():
        results = {}
        for mode in ("mode", "mean"):
            with eval_mode(model, mode):
                results[mode] = accuracy(model(xte))
        results["ensemble"] = accuracy(ensemble_predict(model, xte, args.ensemble))
    print(f"test accuracy: mode {results['mode']:.2f}%  mean {results['mean']:.2f}%  "
          f"{args.ensemble}-sample ensemble {results['ensemble']:.2f}%")
    print(f"time: {time.perf_counter() - t0:.1f} s")
    return 0
