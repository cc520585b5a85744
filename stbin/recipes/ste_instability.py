"""``ste-instability``: Yin et al.'s instability experiment (SPEC B2).

Start from the quantized networks trained with the ReLU and the clipped-ReLU STE (the
``activation-quantized`` runs, shared and reused when present in the same ``--out``) and
continue training with the **identity** STE: first with a small learning rate (1e-5,
constant, 20 epochs), then with the normal schedule (SGD lr 0.05, cosine, 50 epochs).
Plot training loss and test accuracy per epoch (epoch 0 = the starting network) and report
whether and by how much they degrade. LeNet-5 / MNIST on CPU (2- and 4-bit); ResNet-20 /
CIFAR-10 (4-bit; 20 + 200 epochs) when CIFAR-10 and a GPU are there.
"""

from __future__ import annotations

from typing import Any

from stbin.recipes import Recipe, RecipeContext, Run, errors_note, final, line_plot, register
from stbin.recipes.activation_quantized import STE_LABEL, common, fp_key, net_runs, q_key

SOURCES = ("relu", "clipped_relu")
SMALL_LR = 1e-5
# (label, model, preset, extra, cifar, bits)
NETS = (("LeNet-5 / MNIST", "lenet5", "lenet5_mnist", ["model.bn_affine=false"], False, (2, 4)),
        ("ResNet-20 / CIFAR-10", "resnet20", "resnet20_cifar10", ["model.bn_affine=false"], True, (4,)))
# degradation thresholds for the findings sentences
LOSS_REL = 0.05     # final training loss more than 5% above the start's
ACC_DROP = 0.5      # or test accuracy more than 0.5 points below


def small_key(model: str, bits: int, src: str, seed: int) -> str:
    return f"{model}-q{bits}-{src}-to-identity-small-s{seed}"


def normal_key(model: str, bits: int, src: str, seed: int) -> str:
    return f"{model}-q{bits}-{src}-to-identity-s{seed}"


def runs(quick: bool, seeds: list[int]) -> list[Run]:
    out: list[Run] = []
    for _, model, preset, extra, cifar, bits_list in NETS:
        out += net_runs(model, preset, extra, cifar, quick, seeds, stes=SOURCES, bits_list=bits_list)
        base = common(model, quick, cifar) + extra + ['model.activation="quant_relu"', 'model.ste="identity"']
        small_epochs = 1 if quick else 20
        for seed in seeds:
            for bits in bits_list:
                for src in SOURCES:
                    tags = {"model": model, "bits": bits, "source": src}
                    out.append(Run(small_key(model, bits, src, seed), preset,
                                   base + [f"model.bits={bits}", f"optim.lr={SMALL_LR}", 'schedule.name="constant"',
                                           f"train.epochs={small_epochs}"],
                                   seed, init_from=q_key(model, bits, src, seed), optional=cifar, cifar=cifar,
                                   tags={**tags, "phase": "small"}))
                    out.append(Run(normal_key(model, bits, src, seed), preset, base + [f"model.bits={bits}"],
                                   seed, init_from=small_key(model, bits, src, seed), optional=cifar, cifar=cifar,
                                   tags={**tags, "phase": "normal"}))
    return out


def _curve(ctx: RecipeContext, model: str, bits: int, src: str, seed: int) -> dict[str, Any] | None:
    """Epoch 0 = the starting network, then the small-lr and the normal phase; None if incomplete."""
    start, small, normal = (ctx.result(k) for k in (q_key(model, bits, src, seed), small_key(model, bits, src, seed),
                                                    normal_key(model, bits, src, seed)))
    if any("error" in r for r in (start, small, normal)):
        return None
    h0 = start["history"][-1]
    pts = [(0, h0["train_loss"], start["test"]["mode"])]
    for h in small["history"] + normal["history"]:
        pts.append((len(pts), h["train_loss"], h["test_accuracy"]))
    return {"x": [p[0] for p in pts], "loss": [p[1] for p in pts], "acc": [p[2] for p in pts],
            "switch": len(small["history"]), "start_loss": h0["train_loss"], "start_acc": start["test"]["mode"],
            "end_loss": final(normal, "train_loss"), "end_acc": normal["test"]["mode"],
            "max_loss": max(p[1] for p in pts[1:]), "min_acc": min(p[2] for p in pts[1:])}


def summarize(ctx: RecipeContext) -> str:
    from stbin.recipes import fmt

    lines = ["## Continuing with the identity STE", "",
             f"Phase 1: lr {SMALL_LR:g} (constant); phase 2: the normal schedule. Start = the network trained "
             "with the source STE. Mean ± std over seeds " + str(ctx.seeds) + ".", "",
             "| network | bits | source STE | start: train loss | start: test acc. | end: train loss | "
             "end: test acc. | worst train loss | worst test acc. | degraded (seeds) |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    findings, plots = [], []
    for label, model, _, _, _, bits_list in NETS:
        keys = []
        for bits in bits_list:
            series_l, series_a, switch = [], [], None
            for src in SOURCES:
                cs = [c for s in ctx.seeds if (c := _curve(ctx, model, bits, src, s)) is not None]
                keys += [fp_key(model, s) for s in ctx.seeds] + \
                    [k(model, bits, src, s) for s in ctx.seeds for k in (q_key, small_key, normal_key)]
                if not cs:
                    continue
                degraded = [c["end_loss"] > c["start_loss"] * (1 + LOSS_REL) or c["end_acc"] < c["start_acc"] - ACC_DROP
                            for c in cs]
                g = lambda f: [c[f] for c in cs]  # noqa: E731
                lines.append(f"| {label} | {bits} | {STE_LABEL[src]} | {fmt(g('start_loss'), 4)} | {fmt(g('start_acc'))} | "
                             f"{fmt(g('end_loss'), 4)} | {fmt(g('end_acc'))} | {fmt(g('max_loss'), 4)} | "
                             f"{fmt(g('min_acc'))} | {sum(degraded)}/{len(cs)} |")
                sl, el = sum(g("start_loss")) / len(cs), sum(g("end_loss")) / len(cs)
                sa, ea = sum(g("start_acc")) / len(cs), sum(g("end_acc")) / len(cs)
                verdict = "degraded" if sum(degraded) * 2 > len(cs) else "did not degrade (majority of seeds)"
                findings.append(f"* {label}, {bits} bits, from the {STE_LABEL[src]} STE: switching to the identity STE "
                                f"{verdict}: degradation in {sum(degraded)} of {len(cs)} seeds (criterion: final training loss > "
                                f"{1 + LOSS_REL:g}x the start's or test accuracy > {ACC_DROP:g} points lower); "
                                f"training loss {sl:.4f} -> {el:.4f} ({(el / sl - 1) * 100 if sl else 0:+.1f}%), "
                                f"test accuracy {sa:.2f}% -> {ea:.2f}% ({ea - sa:+.2f} points); worst epoch "
                                f"loss {max(g('max_loss')):.4f}, accuracy {min(g('min_acc')):.2f}%.")
                n = min(len(c["x"]) for c in cs)
                xs = cs[0]["x"][:n]
                series_l.append((f"from {STE_LABEL[src]} STE", xs, [sum(c["loss"][i] for c in cs) / len(cs) for i in range(n)]))
                series_a.append((f"from {STE_LABEL[src]} STE", xs, [sum(c["acc"][i] for c in cs) / len(cs) for i in range(n)]))
                switch = cs[0]["switch"]
            for what, series, ylabel in (("loss", series_l, "training loss"), ("accuracy", series_a, "test accuracy (%)")):
                p = line_plot(ctx.out / f"{model}_{bits}bit_identity_{what}.png", series, "epoch of the continuation",
                              ylabel, f"{label}, {bits}-bit: continued with the identity STE", vline=switch)
                if p:
                    plots.append(p)
        lines += errors_note(ctx, keys)
    lines += ["", "## Findings (computed from the table)", ""] + (findings or ["* no complete continuation to report."])
    if ctx.quick:
        lines.append("* Quick setting: 1 + 2 epochs on a 10000-image subset; these numbers only show that the pipeline runs.")
    if plots:
        lines += ["", "## Curves (mean over seeds; dotted line: end of the small-learning-rate phase)", ""] + \
            [f"![{p[:-4]}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


register(Recipe("ste-instability", "continuing quantized-ReLU networks with the identity STE (Yin et al.)",
                runs, summarize))
