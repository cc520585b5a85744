"""``activation-quantized``: Yin et al. (ICLR 2019), Table 1 and Sec. 4.

LeNet-5 on MNIST with b-bit quantized ReLU (b = 2, 4), each with the identity, ReLU and
clipped-ReLU STEs; float weights; alpha fixed by Lloyd's algorithm; a batch norm without
affine parameters before each quantizer; started from a full-precision LeNet-5 (same
architecture with ReLU units) trained first by the recipe; SGD with momentum 0.9 and a
cosine schedule, 50 epochs. Reported per cell: final training loss and test accuracy.

VGG-11 and ResNet-20 (200 epochs, weight decay 5e-4) run on the dataset given by ``--dataset``:
CIFAR-10 by default (the paper's; they run when CIFAR-10 is found with ``--cifar-root`` and a GPU
is there), or any dataset of the registry, e.g. Fashion-MNIST, whose 1x28x28 images the
networks take without a change of depth (ResNet-20 pools globally; VGG-11 zero-pads them to
32x32). Their batch norms are non-affine too. The tables name each row's dataset.
"""

from __future__ import annotations

from statistics import fmean

from stbin.recipes.base import Recipe, RecipeContext, Run, register
from stbin.recipes.summary import (cost_section, dataset_label, errors_note, final, fmt, images_section, line_plot,
                                   mean_curve, run_dataset)

BITS = (2, 4)
STES = ("identity", "relu", "clipped_relu")
STE_LABEL = {"identity": "identity", "relu": "ReLU", "clipped_relu": "clipped ReLU"}

# (label, model, preset, extra model overrides, deep): deep rows train on --dataset, LeNet-5 on MNIST
NETS = (("LeNet-5", "lenet5", "lenet5_mnist", ["model.bn_affine=false"], False),
        ("VGG-11", "vgg11", "vgg11_cifar10", ["model.bn_affine=false"], True),
        ("ResNet-20", "resnet20", "resnet20_cifar10", ["model.bn_affine=false"], True))
FIXED_DATA = "mnist"  # the data of the rows that are not deep

LR = {"lenet5": 0.05, "vgg11": 0.05, "resnet20": 0.1}


def net_id(model: str, dataset: str | None) -> str:
    """The prefix of a network's run keys: the model, and the dataset for the deep rows."""
    return model if dataset is None else f"{model}-{dataset}"


def common(model: str, quick: bool, deep: bool) -> list[str]:
    epochs = (2 if quick else (200 if deep else 50))
    o = ['model.weights="real"', 'optim.name="sgd"', "optim.momentum=0.9", f"optim.lr={LR[model]}",
         'schedule.name="cosine"', f"train.epochs={epochs}", "eval.ensemble=0", 'eval.modes=["mode"]',
         "train.keep_checkpoints=1"]
    if model != "lenet5":
        o.append("optim.weight_decay=0.0005")
    if quick:
        o += ["data.train_limit=10000", "data.test_limit=2000"]
        if deep:  # quarter width: the quick setting only shows that the pipeline runs
            o.append("model.width=0.25")
    return o


def fp_key(net: str, seed: int) -> str:
    return f"{net}-fp-s{seed}"


def q_key(net: str, bits: int, ste: str, seed: int) -> str:
    return f"{net}-q{bits}-{ste}-s{seed}"


def net_runs(model: str, preset: str, extra: list[str], dataset: str | None, quick: bool, seeds: list[int],
             stes: tuple[str, ...] = STES, bits_list: tuple[int, ...] = BITS) -> list[Run]:
    """The float run and the quantized runs started from it; ``dataset``: None for LeNet-5 / MNIST."""
    runs = []
    deep = dataset is not None
    net = net_id(model, dataset)
    base = common(model, quick, deep) + extra
    tags = {"model": model, "dataset": dataset or FIXED_DATA}
    for seed in seeds:
        runs.append(Run(fp_key(net, seed), preset, base + ['model.activation="relu"'], seed, optional=deep,
                        dataset=dataset, tags={**tags, "kind": "fp"}))
        for bits in bits_list:
            for ste in stes:
                runs.append(Run(q_key(net, bits, ste, seed), preset,
                                base + ['model.activation="quant_relu"', f"model.bits={bits}", f'model.ste="{ste}"'],
                                seed, init_from=fp_key(net, seed), optional=deep, dataset=dataset,
                                tags={**tags, "bits": bits, "ste": ste}))
    return runs


def runs(quick: bool, seeds: list[int], dataset: str = "cifar10") -> list[Run]:
    out = []
    for _, model, preset, extra, deep in NETS:
        out += net_runs(model, preset, extra, dataset if deep else None, quick, seeds)
    return out


def _cell(ctx: RecipeContext, net: str, bits: int, ste: str) -> dict[int, dict[str, float]]:
    """seed -> {"acc", "loss"} of the finished runs of one cell."""
    out = {}
    for s in ctx.seeds:
        r = ctx.result(q_key(net, bits, ste, s))
        if "error" not in r:
            out[s] = {"acc": r["test"]["mode"], "loss": final(r, "train_loss")}
    return out


def _finding(label: str, bits: int, cells: dict[str, dict[int, dict[str, float]]]) -> str | None:
    """One sentence on which STE is best at ``bits`` bits, by how much, and in how many seeds."""
    done = {t: c for t, c in cells.items() if c}
    if len(done) < 2:
        return None
    acc = {t: fmean(v["acc"] for v in c.values()) for t, c in done.items()}
    loss = {t: fmean(ls) for t, c in done.items() if (ls := [v["loss"] for v in c.values() if v["loss"] is not None])}
    order = sorted(acc, key=lambda t: -acc[t])
    best, worst = order[0], order[-1]
    paired = [s for s in done[best] if all(s in c for c in done.values())]
    wins = sum(all(done[best][s]["acc"] >= done[t][s]["acc"] for t in done) for s in paired)
    text = (f"* {label}, {bits} bits: best test accuracy with the {STE_LABEL[best]} STE ({acc[best]:.2f}%, "
            f"{acc[best] - acc[order[1]]:+.2f} points over the {STE_LABEL[order[1]]} STE"
            + (f", {acc[best] - acc[worst]:+.2f} over the {STE_LABEL[worst]} STE" if len(order) > 2 else "")
            + f"; the best of the STEs in {wins} of {len(paired)} seeds)"
            + (f"; lowest training loss with the {STE_LABEL[min(loss, key=loss.get)]} STE." if loss else "."))
    if "relu" in done and "clipped_relu" in done:
        both = [s for s in done["relu"] if s in done["clipped_relu"]]
        ahead = sum(done["clipped_relu"][s]["acc"] > done["relu"][s]["acc"] for s in both)
        text += (f" Clipped ReLU vs ReLU STE: {acc['clipped_relu'] - acc['relu']:+.2f} points, ahead in {ahead} of "
                 f"{len(both)} seeds.")
    return text


def summarize(ctx: RecipeContext) -> str:
    lines = ["## Table 1: training loss / test accuracy (%) per cell", "",
             "Mean ± std over seeds " + str(ctx.seeds) + "; test accuracy of the final network; "
             "training loss = mean cross-entropy over the last epoch.", "",
             "| network | bits | " + " | ".join(f"{STE_LABEL[s]} STE: train loss | test acc." for s in STES) + " |",
             "|---|---|" + "--:|--:|" * len(STES)]
    notes: list[str] = []
    findings: list[str] = []
    labels: dict[str, str] = {}
    spread: dict[tuple[str, int], tuple[float, str]] = {}  # (label, bits) -> (best - identity, name)
    for name, model, _, _, deep in NETS:
        net = net_id(model, ctx.dataset if deep else None)
        keys = [fp_key(net, s) for s in ctx.seeds] + [q_key(net, b, t, s) for b in BITS for t in STES
                                                      for s in ctx.seeds]
        label = labels[net] = f"{name} / {dataset_label(run_dataset(ctx, keys, ctx.dataset if deep else FIXED_DATA))}"
        fp = [ctx.result(fp_key(net, s)) for s in ctx.seeds]
        fp_ok = [r for r in fp if "error" not in r]
        if not fp_ok:
            note = fp[0].get("error", "not run")
            lines.append(f"| {label} | — | not run: {note} |" + " |" * (2 * len(STES) - 1))
            notes += errors_note(ctx, keys[len(ctx.seeds):])
            continue
        lines.append(f"| {label} | float (ReLU) | {fmt([final(r, 'train_loss') for r in fp_ok], 4)} | "
                     f"{fmt([r['test']['mode'] for r in fp_ok])} |" + " — |" * (2 * len(STES) - 2))
        for bits in BITS:
            cells = {ste: _cell(ctx, net, bits, ste) for ste in STES}
            lines.append(f"| {label} | {bits} | " + " | ".join(
                f"{fmt([v['loss'] for v in c.values()], 4)} | {fmt([v['acc'] for v in c.values()])}"
                for c in cells.values()) + " |")
            text = _finding(label, bits, cells)
            if text:
                findings.append(text)
            acc = {t: fmean(v["acc"] for v in c.values()) for t, c in cells.items() if c}
            if "identity" in acc and len(acc) > 1:
                spread[(label, bits)] = (max(acc.values()) - acc["identity"], deep)
        notes += errors_note(ctx, keys)
    lines += ([""] + notes if notes else [])
    for bits in BITS:  # Yin et al.: the choice of STE matters more in deeper networks
        shallow = [(lb, d) for (lb, b), (d, deep) in spread.items() if b == bits and not deep]
        deep_ = [(lb, d) for (lb, b), (d, deep) in spread.items() if b == bits and deep]
        for (ls, ds) in shallow:
            for (ld, dd) in deep_:
                findings.append(f"* Depth, {bits} bits: the identity STE is {ds:.2f} points below the best STE on "
                                f"{ls} and {dd:.2f} points on {ld}: the choice of STE matters "
                                f"{'more' if dd > ds else 'less' if dd < ds else 'as much'} on the deeper network.")
    lines += ["", "## Findings (computed from the table)", ""] + (findings or ["* no complete cell to compare."])
    if ctx.quick:
        lines.append("* Quick setting: these numbers only show that the pipeline runs; they say nothing about "
                     "the paper's claims.")
    lines += cost_section(ctx, lambda r: labels.get(net_id(r.tags["model"], r.dataset)))
    plots = []
    for net, label in labels.items():
        for bits in BITS:
            series_l, series_a = [], []
            for ste in STES:
                hs = [ctx.result(q_key(net, bits, ste, s)).get("history") or [] for s in ctx.seeds]
                series_l.append((f"{bits}-bit, {STE_LABEL[ste]} STE",) + mean_curve(hs, "train_loss"))
                series_a.append((f"{bits}-bit, {STE_LABEL[ste]} STE",) + mean_curve(hs, "test_accuracy"))
            for what, series, ylabel in (("loss", series_l, "training loss"),
                                         ("accuracy", series_a, "test accuracy (%)")):
                p = line_plot(ctx.out / f"{net}_{bits}bit_{what}.png", series, "epoch", ylabel,
                              f"{label}, {bits}-bit quantized ReLU (mean over seeds)", logy=what == "loss")
                if p:
                    plots.append(p)
    lines += images_section("Curves", plots)
    return "\n".join(lines) + "\n"


register(Recipe("activation-quantized", "quantized-ReLU networks with three STEs (Yin et al., Table 1)",
                runs, summarize))
