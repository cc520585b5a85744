"""``sbn-study``: all-binary networks on MNIST and Fashion-MNIST (Shekhovtsov & Yanush, GCPR 2021).

The network of the ``sbn_mnist`` preset (MLP 784-512-512-512-10, binary weights in the first
three layers, binary hidden units, real last layer and batch norms), 20 epochs (cosine), in
seven variants:

* ``binarynet`` — deterministic BinaryNet: sign units with the htanh ST, sign weights,
  latent weights clipped to [-1, 1], Adam;
* ``{logistic,uniform}-mirror-adam`` — stochastic binary units and Bernoulli weights with
  logistic / uniform noise, principled ST, latent weights updated with dL/dw (mirror descent,
  Adam-preconditioned);
* ``{logistic,uniform}-mirror-sgd`` — the same with SGD (momentum 0.9): the mirror-descent step;
* ``{logistic,uniform}-fprime-adam`` — the latent gradient through F' (``optim.latent = "st"``,
  plain SGD/Adam on theta through the weight ST), the alternative to the mirror step that the paper contrasts it with.

Convolutional part, on the dataset given by ``--dataset`` (CIFAR-10 by default, the paper's;
e.g. Fashion-MNIST): the same seven variants on the BinaryNet VGG layout
(2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10FC): ``binarynet`` is BinaryNet's VGG
(``binarynet_vgg``: sign units, htanh ST, sign weights), the others the stochastic binary conv net
(``sbn_conv``: logistic / uniform stochastic units, Bernoulli weights with s_w = 0.1). In both the
first conv and the last FC stay real-valued, so the two differ only in the hidden units, the
hidden weights and the latent-weight rule. Batch 100, 20 epochs (cosine).

Test accuracy in mode, mean-field and 10-sample ensemble; training curves.
"""

from __future__ import annotations

from typing import Callable

from stbin.recipes.base import Recipe, RecipeContext, Run, register
from stbin.recipes.summary import (cost_section, dataset_label, errors_note, fmt, images_section, line_plot, mean_curve,
                                   run_dataset)

DATASETS = (("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST"))
_BN = ['model.activation="sign"', 'model.proxy="htanh"', 'model.weights="sign"', 'optim.name="adam"',
       "optim.lr=0.005", "optim.clip=1.0", "optim.latent_lr_scale=1.0"]


# SGD variants: lr 0.01 for the real parameters (BN, last layer) and 3e4 x that for the latent weights
# (latent lr 300). dL/dw per weight is small, so plain SGD on theta needs a latent learning rate
# orders of magnitude above Adam's, which normalises the step. Probe (MNIST, 20000 images, 1 epoch,
# mode accuracy, logistic / uniform; the first setting lr 0.1 / latent lr 0.3 diverged): latent lr 0.03
# 12% / 52%, 0.3 15% / 69%, 3 44% / 90%, 30 86% / 93%, 300 90% / 92%.
SGD_LR = 0.01
SGD_LATENT_SCALE = 30000.0


def _sbn(noise: str, opt: str, latent: str) -> list[str]:
    o = ['model.activation="stochastic"', f'model.noise="{noise}"', 'model.weights="bernoulli"',
         f'model.weight_noise="{noise}"', f'optim.latent="{latent}"']
    o += (['optim.name="sgd"', f"optim.lr={SGD_LR}", "optim.momentum=0.9", f"optim.latent_lr_scale={SGD_LATENT_SCALE}"]
          if opt == "sgd" else ['optim.name="adam"'])
    return o


VARIANTS = {
    "binarynet": ("BinaryNet (deterministic, htanh ST, clipped latents, Adam)", _BN),
    **{f"{n}-mirror-adam": (f"SBN {n} noise, principled ST, mirror latent step, Adam", _sbn(n, "adam", "mirror"))
       for n in ("logistic", "uniform")},
    **{f"{n}-mirror-sgd": (f"SBN {n} noise, principled ST, mirror latent step, SGD", _sbn(n, "sgd", "mirror"))
       for n in ("logistic", "uniform")},
    **{f"{n}-fprime-adam": (f"SBN {n} noise, principled ST, weight gradient through F', Adam",
                            _sbn(n, "adam", "st")) for n in ("logistic", "uniform")},
}
EVALS = (("mode", "mode"), ("mean", "mean-field"), ("ensemble", "ensemble (10 samples; 3 with --quick)"))


CONV_PRESET = {"binarynet": "binarynet_cifar10"}  # the SBN variants: sbn_conv_cifar10


def key(variant: str, dataset: str, seed: int) -> str:
    return f"sbn-{dataset}-{variant}-s{seed}"


def conv_key(variant: str, dataset: str, seed: int) -> str:
    return f"sbn-conv-{dataset}-{variant}-s{seed}"


def runs(quick: bool, seeds: list[int], dataset: str = "cifar10") -> list[Run]:
    out = []
    for ds, _ in DATASETS:
        base = [f'data.name="{ds}"', "train.epochs=" + ("2" if quick else "20"), "train.keep_checkpoints=1"]
        if quick:
            base += ["data.train_limit=10000", "data.test_limit=2000", "model.hidden=[128, 128, 128]", "eval.ensemble=3"]
        for seed in seeds:
            for v, (_, over) in VARIANTS.items():
                out.append(Run(key(v, ds, seed), "sbn_mnist", base + over, seed, tags={"variant": v, "dataset": ds}))
    base = ["train.epochs=" + ("2" if quick else "20"), "train.keep_checkpoints=1", "train.batch_size=100",
            'schedule.name="cosine"', "model.binary_first=false", "model.binary_last=false"]
    if quick:
        base += ["data.train_limit=10000", "data.test_limit=2000", "model.width=0.25", "eval.ensemble=3"]
    for seed in seeds:
        for v, (_, over) in VARIANTS.items():
            out.append(Run(conv_key(v, dataset, seed), CONV_PRESET.get(v, "sbn_conv_cifar10"), base + over, seed,
                           optional=True, dataset=dataset, tags={"variant": v, "dataset": dataset, "part": "conv"}))
    return out


def _acc(ctx: RecipeContext, keyf: Callable[[str, int], str], v: str, what: str) -> list[float]:
    return [r["test"][what] for s in ctx.seeds if "error" not in (r := ctx.result(keyf(v, s))) and what in r["test"]]


def _m(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _parts(ctx: RecipeContext) -> list[tuple[str, str, Callable[[str, int], str]]]:
    """(label, file stem, run key of (variant, seed)) of every part: the MLP per dataset, then the conv nets."""
    parts: list[tuple[str, str, Callable[[str, int], str]]] = [
        (f"MLP / {dl}", ds, (lambda v, s, ds=ds: key(v, ds, s))) for ds, dl in DATASETS]
    ckey = lambda v, s: conv_key(v, ctx.dataset, s)  # noqa: E731
    ds = run_dataset(ctx, [ckey(v, s) for v in VARIANTS for s in ctx.seeds], ctx.dataset)
    parts.append((f"conv / {dataset_label(ds)}", f"conv_{ctx.dataset}", ckey))
    return parts


def _findings(ctx: RecipeContext, dl: str, keyf: Callable[[str, int], str]) -> list[str]:
    mode = {v: _m(_acc(ctx, keyf, v, "mode")) for v in VARIANTS}
    ens = {v: _m(_acc(ctx, keyf, v, "ensemble")) for v in VARIANTS}
    mean = {v: _m(_acc(ctx, keyf, v, "mean")) for v in VARIANTS}
    done = {v: a for v, a in mode.items() if a is not None}
    if not done:
        return []
    best = max(done, key=done.get)
    f = [f"* {dl}: best mode accuracy {done[best]:.2f}% ({VARIANTS[best][0]})."]
    sbn = {v: a for v, a in done.items() if v != "binarynet"}
    if sbn and "binarynet" in done:
        b = max(sbn, key=sbn.get)
        d = sbn[b] - done["binarynet"]
        f.append(f"* {dl}: the best stochastic binary network ({VARIANTS[b][0]}, {sbn[b]:.2f}%) is "
                 f"{'above' if d > 0 else 'below' if d < 0 else 'level with'} deterministic BinaryNet "
                 f"({done['binarynet']:.2f}%) by {abs(d):.2f} points.")
    for n in ("logistic", "uniform"):
        a, b = mode.get(f"{n}-mirror-adam"), mode.get("binarynet")
        if a is not None and b is not None:
            f.append(f"* {dl}, {n} noise: the stochastic network with the principled ST and mirror-descent Adam is "
                     f"{'above' if a > b else 'below' if a < b else 'level with'} deterministic BinaryNet by "
                     f"{abs(a - b):.2f} points (mode {a:.2f}% vs {b:.2f}%).")
        a, b = mode.get(f"{n}-mirror-adam"), mode.get(f"{n}-fprime-adam")
        if a is not None and b is not None:
            f.append(f"* {dl}, {n} noise (mirror step vs gradient through F'): dL/dw latent updates "
                     f"give {a:.2f}%, the F' weight gradient {b:.2f}% ({a - b:+.2f} points for the mirror step).")
        a, b = mode.get(f"{n}-mirror-adam"), mode.get(f"{n}-mirror-sgd")
        if a is not None and b is not None:
            f.append(f"* {dl}, {n} noise: mirror step under Adam {a:.2f}% vs under SGD {b:.2f}% "
                     f"({a - b:+.2f} points for Adam).")
        a, b, c = ens.get(f"{n}-mirror-adam"), mode.get(f"{n}-mirror-adam"), mean.get(f"{n}-mirror-adam")
        if a is not None and b is not None and c is not None:
            f.append(f"* {dl}, {n} noise (evaluation of a stochastic network): ensemble {a:.2f}%, "
                     f"mode {b:.2f}%, mean-field {c:.2f}% (ensemble {a - b:+.2f} points over the mode).")
    return f


def summarize(ctx: RecipeContext) -> str:
    parts = _parts(ctx)
    lines = ["## Test accuracy (%)", "", "Mean ± std over seeds " + str(ctx.seeds) + "; one column group per "
             "network and dataset (MLP 784-512-512-512-10; conv: the BinaryNet VGG layout).", "",
             "| variant | " + " | ".join(f"{pl}: {el}" for pl, _, _ in parts for _, el in EVALS) + " |",
             "|---|" + "--:|" * (len(parts) * len(EVALS))]
    for v, (label, _) in VARIANTS.items():
        lines.append(f"| {label} | " + " | ".join(fmt(_acc(ctx, kf, v, e)) for _, _, kf in parts for e, _ in EVALS)
                     + " |")
    notes = errors_note(ctx, [r.key for r in ctx.runs])
    lines += ([""] + notes if notes else [])
    f: list[str] = []
    for pl, _, kf in parts:
        f += _findings(ctx, pl, kf)
    lines += ["", "## Findings (computed from the table)", "",
              "What the measurements say about the principled ST for stochastic binary units and the latent "
              "weights as mirror-descent dual variables (Shekhovtsov & Yanush, GCPR 2021):", ""] + \
        (f or ["* no finished run."])
    if ctx.quick:
        lines.append("* Quick setting (2 epochs, 10000 training images, 128-unit layers, quarter-width conv nets): "
                     "these numbers only show that the pipeline runs; they support no claim.")
    lines += cost_section(ctx, lambda r: f"{'conv' if r.tags.get('part') == 'conv' else 'MLP'} / "
                          f"{dataset_label(r.tags['dataset'])}: "
                          + ("BinaryNet" if r.tags["variant"] == "binarynet" else "stochastic binary"))
    plots = []
    for pl, stem, kf in parts:
        for what, ylabel in (("train_loss", "training loss"), ("test_accuracy", "test accuracy (%, mode)")):
            series = [(v,) + mean_curve([ctx.result(kf(v, s)).get("history") or [] for s in ctx.seeds], what)
                      for v in VARIANTS]
            p = line_plot(ctx.out / f"{stem}_{what}.png", series, "epoch", ylabel, f"{pl} (mean over seeds)")
            if p:
                plots.append(p)
    lines += images_section("Training curves", plots)
    return "\n".join(lines) + "\n"


register(Recipe("sbn-study", "deterministic vs stochastic binary networks, latent-weight updates "
                "(Shekhovtsov & Yanush)",
                runs, summarize))
