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

from stbin.recipes import (Recipe, RecipeContext, Run, dataset_label, errors_note, final, fmt, images_section,
                           line_plot, mean_curve, register, run_dataset)

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


def summarize(ctx: RecipeContext) -> str:
    lines = ["## Table 1: training loss / test accuracy (%) per cell", "",
             "Mean ± std over seeds " + str(ctx.seeds) + "; test accuracy of the final network; "
             "training loss = mean cross-entropy over the last epoch.", "",
             "| network | bits | " + " | ".join(f"{STE_LABEL[s]} STE: train loss | test acc." for s in STES) + " |",
             "|---|---|" + "--:|--:|" * len(STES)]
    findings, labels = [], {}
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
            lines += errors_note(ctx, keys[len(ctx.seeds):])
            continue
        fp_acc = [r["test"]["mode"] for r in fp_ok]
        lines.append(f"| {label} | float (ReLU) | {fmt([final(r, 'train_loss') for r in fp_ok], 4)} | "
                     f"{fmt(fp_acc)} |" + " — |" * (2 * len(STES) - 2))
        for bits in BITS:
            cells, best = [], None
            for ste in STES:
                rs = [ctx.result(q_key(net, bits, ste, s)) for s in ctx.seeds]
                ok = [r for r in rs if "error" not in r]
                acc = [r["test"]["mode"] for r in ok]
                cells += [fmt([final(r, "train_loss") for r in ok], 4), fmt(acc)]
                if acc:
                    m = sum(acc) / len(acc)
                    if best is None or m > best[1]:
                        best = (ste, m)
                    loss = [final(r, "train_loss") for r in ok]
                    findings.append((label, bits, ste, m, sum(loss) / len(loss)))
            lines.append(f"| {label} | {bits} | " + " | ".join(cells) + " |")
        lines += errors_note(ctx, keys)
    lines += ["", "## Findings (computed from the table)", ""]
    for label in labels.values():
        for bits in BITS:
            cell = {ste: (m, l) for (lb, b, ste, m, l) in findings if lb == label and b == bits}
            if len(cell) < 2:
                continue
            order = sorted(cell, key=lambda s: -cell[s][0])
            lines.append(f"* {label}, {bits} bits: best test accuracy with the {STE_LABEL[order[0]]} STE "
                         f"({cell[order[0]][0]:.2f}%), worst with the {STE_LABEL[order[-1]]} STE "
                         f"({cell[order[-1]][0]:.2f}%, {cell[order[0]][0] - cell[order[-1]][0]:.2f} points lower); "
                         f"lowest training loss with the {STE_LABEL[min(cell, key=lambda s: cell[s][1])]} STE.")
    if ctx.quick:
        lines.append("* Quick setting: these numbers only show that the pipeline runs; they say nothing about "
                     "the paper's claims.")
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
