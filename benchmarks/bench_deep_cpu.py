"""CPU throughput of the deep networks of the recipes on 1x28x28 (Fashion-MNIST-shaped) inputs.

One torch thread (as each run of ``stbin reproduce --jobs N``), random inputs (throughput does
not depend on the pixel values), a training step = forward, cross-entropy, backward, SGD step;
the evaluation rate is a forward pass in eval mode. The first step of each network is a
warm-up. These numbers choose the schedules of ``scripts/run-deep-experiments.sh``.

    python benchmarks/bench_deep_cpu.py [--steps 5] [--nets resnet20,vgg11,binarynet_vgg,sbn_conv]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from stbin.models import build_model

NETS = {
    "resnet20-float": ("resnet20", 128, dict(activation="relu", weights="real", bn_affine=False)),
    "resnet20-2bit": ("resnet20", 128, dict(activation="quant_relu", bits=2, ste="relu", weights="real",
                                            bn_affine=False)),
    "vgg11-2bit": ("vgg11", 128, dict(activation="quant_relu", bits=2, ste="relu", weights="real", bn_affine=False)),
    "binarynet_vgg-w0.25": ("binarynet_vgg", 100, dict(width=0.25, binary_first=False, binary_last=False)),
    "sbn_conv-w0.25": ("sbn_conv", 100, dict(width=0.25, weight_noise_scale=0.1)),
}


def bench(model: str, batch: int, steps: int, **kw: object) -> tuple[float, float]:
    """(training images/s, evaluation images/s) of one network."""
    torch.manual_seed(0)
    m = build_model(model, in_channels=1, num_classes=10, image_size=28, **kw)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    m.train()
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = batch * steps / (time.perf_counter() - t)
    m.eval()
    with torch.no_grad():
        m(x)
        t = time.perf_counter()
        for _ in range(steps):
            m(x)
    return train, batch * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--nets", default=",".join(NETS), help="comma-separated, of: " + ", ".join(NETS))
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| network | batch | training images/s | eval images/s | core-s per 10000-image epoch (train + eval) |")
    print("|---|--:|--:|--:|--:|")
    for name in args.nets.split(","):
        model, batch, kw = NETS[name]
        tr, ev = bench(model, batch, args.steps, **kw)
        print(f"| {name} | {batch} | {tr:.0f} | {ev:.0f} | {10000 / tr + 10000 / ev:.0f} |", flush=True)


if __name__ == "__main__":
    main()
