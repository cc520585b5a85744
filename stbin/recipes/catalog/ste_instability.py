"""``ste-instability``: Yin et al.'s instability experiment (Yin et al., ICLR 2019, Sec. 4).

Start from the quantized networks trained with the ReLU and the clipped-ReLU STE (the
``activation-quantized`` runs, shared and reused when present in the same ``--out``) and
continue training with the **identity** STE: first with a small learning rate (1e-5,
constant, 20 epochs), then with the normal schedule (SGD lr 0.05, cosine, 50 epochs).
Plot training loss and test accuracy per epoch (epoch 0 = the starting network) and report
whether and by how much they degrade.

Control: the same two phases with the *source* STE kept (ReLU -> ReLU, clipped ReLU ->
clipped ReLU). Restarting a learning-rate schedule on a converged network perturbs it by
itself; the control measures that part, so the identity STE's own effect is the gap between
the two continuations, not the gap to the starting network.

LeNet-5 / MNIST (2- and 4-bit; 20 + 50 epochs); ResNet-20 (2- and 4-bit; 20 + 200 epochs) on the
dataset given by ``--dataset``: CIFAR-10 by default (the paper's 4-bit experiment; it runs when
CIFAR-10 and a GPU are there), or any dataset of the registry, e.g. Fashion-MNIST.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from stbin.recipes.base import Recipe, RecipeContext, Run, register
from stbin.recipes.catalog.activation_quantized import (FIXED_DATA, STE_LABEL, common, fp_key, net_id, net_runs,
                                                        q_key)
from stbin.recipes.summary import (cost_section, dataset_label, errors_note, final, fmt, images_section, line_plot,
                                   run_dataset)
from stbin.reporting.markdown import table

SOURCES = ("relu", "clipped_relu")
SMALL_LR = 1e-5
# (label, model, preset, extra, deep, bits): deep rows train on --dataset
NETS = (("LeNet-5", "lenet5", "lenet5_mnist", ["model.bn_affine=false"], False, (2, 4)),
        ("ResNet-20", "resnet20", "resnet20_cifar10", ["model.bn_affine=false"], True, (2, 4)))
# degradation thresholds for the findings sentences
LOSS_REL = 0.05     # final training loss more than 5% above the start's
ACC_DROP = 0.5      # or test accuracy more than 0.5 points below


def small_key(model: str, bits: int, src: str, seed: int, target: str = "identity") -> str:
    """Phase 1 (small constant lr) of continuing the ``src``-STE network with the ``target`` STE."""
    return f"{model}-q{bits}-{src}-to-{target}-small-s{seed}"


def normal_key(model: str, bits: int, src: str, seed: int, target: str = "identity") -> str:
    """Phase 2 (the normal schedule) of that continuation."""
    return f"{model}-q{bits}-{src}-to-{target}-s{seed}"


def runs(quick: bool, seeds: list[int], dataset: str = "cifar10") -> list[Run]:
    out: list[Run] = []
    for _, model, preset, extra, deep, bits_list in NETS:
        ds = dataset if deep else None
        net = net_id(model, ds)
        out += net_runs(model, preset, extra, ds, quick, seeds, stes=SOURCES, bits_list=bits_list)
        small_epochs = 1 if quick else 20
        for seed in seeds:
            for bits in bits_list:
                for src in SOURCES:
                    for target in ("identity", src):  # the identity STE, then the control
                        base = common(model, quick, deep) + extra + [
                            'model.activation="quant_relu"', f'model.ste="{target}"', f"model.bits={bits}"]
                        tags = {"model": model, "dataset": ds or FIXED_DATA, "bits": bits, "source": src,
                                "target": target}
                        out.append(Run(small_key(net, bits, src, seed, target), preset,
                                       base + [f"optim.lr={SMALL_LR}", 'schedule.name="constant"',
                                               f"train.epochs={small_epochs}"],
                                       seed, init_from=q_key(net, bits, src, seed), optional=deep, dataset=ds,
                                       tags={**tags, "phase": "small"}))
                        out.append(Run(normal_key(net, bits, src, seed, target), preset, base,
                                       seed, init_from=small_key(net, bits, src, seed, target), optional=deep,
                                       dataset=ds, tags={**tags, "phase": "normal"}))
    return out


def _curve(ctx: RecipeContext, net: str, bits: int, src: str, seed: int, target: str) -> dict[str, Any] | None:
    """Epoch 0 = the starting network, then the small-lr and the normal phase; None if incomplete.

    A summary written before runs kept their per-epoch history (an archived ``results.json``) still
    gives the start's and the end's test accuracy; its losses, worst epoch and curve are None / empty."""
    start, small, normal = (ctx.result(k) for k in (q_key(net, bits, src, seed),
                                                    small_key(net, bits, src, seed, target),
                                                    normal_key(net, bits, src, seed, target)))
    if any("error" in r or "mode" not in (r.get("test") or {}) for r in (start, small, normal)):
        return None  # not finished
    ends = {"start_acc": start["test"]["mode"], "end_acc": normal["test"]["mode"]}
    if not all(r.get("history") for r in (start, small, normal)):
        return {"x": [], "loss": [], "acc": [], "switch": None, "start_loss": None, "end_loss": None,
                "max_loss": None, "min_acc": None, **ends}
    h0 = start["history"][-1]
    pts = [(0, h0["train_loss"], start["test"]["mode"])]
    for h in small["history"] + normal["history"]:
        pts.append((len(pts), h["train_loss"], h["test_accuracy"]))
    return {"x": [p[0] for p in pts], "loss": [p[1] for p in pts], "acc": [p[2] for p in pts],
            "switch": len(small["history"]), "start_loss": h0["train_loss"], "end_loss": final(normal, "train_loss"),
            "max_loss": max(p[1] for p in pts[1:]), "min_acc": min(p[2] for p in pts[1:]), **ends}


def _worse(loss: float | None, acc: float, ref_loss: float | None, ref_acc: float) -> bool:
    """The degradation criterion: loss more than LOSS_REL above ``ref_loss`` or accuracy ACC_DROP points lower
    (the loss part only where both losses are known)."""
    higher = loss is not None and ref_loss is not None and loss > ref_loss * (1 + LOSS_REL)
    return higher or acc < ref_acc - ACC_DROP


def _mean(values: list[float | None], spec: str, unit: str = "") -> str:
    """The mean of the known ``values`` formatted by ``spec``, or "n/a" (not recorded)."""
    known = [v for v in values if v is not None]
    return f"{fmean(known):{spec}}{unit}" if known else "n/a"


def _compare(ctx: RecipeContext, label: str, net: str, bits: int,
             src: str) -> tuple[list, str, list, float | None] | None:
    """Table row, findings sentence, plot series (identity, control) and the identity-minus-control test accuracy
    (seeds with both; None without a control) of one start; None if no identity continuation finished."""
    ci = {s: c for s in ctx.seeds if (c := _curve(ctx, net, bits, src, s, "identity")) is not None}
    cc = {s: c for s in ctx.seeds if (c := _curve(ctx, net, bits, src, s, src)) is not None}
    if not ci:
        return None
    ids, ctl = list(ci.values()), list(cc.values())
    gi = lambda f: [c[f] for c in ids]  # noqa: E731
    gc = lambda f: [c[f] for c in ctl]  # noqa: E731
    vs_start = sum(_worse(c["end_loss"], c["end_acc"], c["start_loss"], c["start_acc"]) for c in ids)
    paired = [s for s in ci if s in cc]
    vs_ctl = sum(_worse(ci[s]["end_loss"], ci[s]["end_acc"], cc[s]["end_loss"], cc[s]["end_acc"]) for s in paired)
    row = [label, bits, STE_LABEL[src], fmt(gi("start_loss"), 4), fmt(gi("start_acc")),
           fmt(gi("end_loss"), 4), fmt(gi("end_acc")), fmt(gi("max_loss"), 4), fmt(gi("min_acc")),
           fmt(gc("end_loss"), 4), fmt(gc("end_acc")), fmt(gc("max_loss"), 4), fmt(gc("min_acc")),
           f"{vs_start}/{len(ids)}", f"{vs_ctl}/{len(paired)}" if paired else None]
    sa, ea = fmean(gi("start_acc")), fmean(gi("end_acc"))
    if all(c["start_loss"] is not None and c["end_loss"] is not None for c in ids):
        sl, el = fmean(gi("start_loss")), fmean(gi("end_loss"))
        loss_text = f"the training loss went {sl:.4f} -> {el:.4f} ({(el / sl - 1) * 100 if sl else 0:+.1f}%) and "
    else:
        loss_text = "(training losses not recorded in this summary) "
    text = (f"* {label}, {bits} bits, from the {STE_LABEL[src]} STE: with the identity STE {loss_text}the test "
            f"accuracy {sa:.2f}% -> {ea:.2f}% ({ea - sa:+.2f} points); degraded vs the start in {vs_start} of "
            f"{len(ids)} seeds; worst epoch: loss {_mean(gi('max_loss'), '.4f')}, accuracy "
            f"{_mean(gi('min_acc'), '.2f', '%')} (seed means).")
    gap = None
    if paired:
        ca = fmean(cc[s]["end_acc"] for s in paired)
        ia = fmean(ci[s]["end_acc"] for s in paired)
        cls, ils = [cc[s]["end_loss"] for s in paired], [ci[s]["end_loss"] for s in paired]
        ratio = (f"{fmean(ils) / fmean(cls):.2f}x the control's training loss and "
                 if None not in cls + ils and fmean(cls) else "")
        text += (f" Control ({STE_LABEL[src]} STE kept): end loss {_mean(cls, '.4f')}, accuracy {ca:.2f}%, worst "
                 f"epoch loss {_mean(gc('max_loss'), '.4f')}, accuracy {_mean(gc('min_acc'), '.2f', '%')}; the "
                 f"identity STE ends at {ratio}{ia - ca:+.2f} points of test accuracy, worse than the control in "
                 f"{vs_ctl} of {len(paired)} seeds.")
        gap = ia - ca
    series = [(f"from {STE_LABEL[src]}: identity STE", ids, "-"),
              (f"from {STE_LABEL[src]}: {STE_LABEL[src]} STE kept (control)", ctl, "--")]
    return row, text, [s for s in series if s[1] and all(c["x"] for c in s[1])], gap


def _net_label(ctx: RecipeContext, name: str, model: str, deep: bool) -> tuple[str, str]:
    """The run-key stem of a network of :data:`NETS` in ``ctx`` and its label ("ResNet-20 / Fashion-MNIST")."""
    net = net_id(model, ctx.dataset if deep else None)
    ds = run_dataset(ctx, [fp_key(net, s) for s in ctx.seeds], ctx.dataset if deep else FIXED_DATA)
    return net, f"{name} / {dataset_label(ds)}"


def _gaps(ctx: RecipeContext) -> dict[tuple[int, str], list[tuple[str, bool, float]]]:
    """(bits, source STE) -> [(network label, deep, identity-minus-control end test accuracy)] of ``ctx``."""
    gaps: dict[tuple[int, str], list[tuple[str, bool, float]]] = {}
    for name, model, _, _, deep, bits_list in NETS:
        net, label = _net_label(ctx, name, model, deep)
        for bits in bits_list:
            for src in SOURCES:
                cmp = _compare(ctx, label, net, bits, src)
                if cmp is not None and cmp[3] is not None:
                    gaps.setdefault((bits, src), []).append((label, deep, cmp[3]))
    return gaps


def _depth_findings(gaps: dict[tuple[int, str], list[tuple[tuple[str, bool, float], str]]],
                    across: bool = False) -> list[str]:
    """Yin et al.: the identity STE's instability shows on the deeper network. One sentence per (shallow, deep)
    pair of continuations with a control: ``gaps`` maps (bits, source STE) to ((label, deep, gap), origin);
    with ``across``, only pairs from different origins (summaries) are compared."""
    out = []
    for (bits, src), g in gaps.items():
        for (ls, _, gs), os_ in (x for x in g if not x[0][1]):
            for (ld, _, gd), od in (x for x in g if x[0][1]):
                if across and os_ == od:
                    continue
                where = (f"{ls} ({os_}) and {gd:+.2f} on {ld} ({od})" if across else f"{ls} and {gd:+.2f} on {ld}")
                out.append(f"* Depth, {bits} bits, from the {STE_LABEL[src]} STE: against its control the identity "
                           f"continuation ends {gs:+.2f} points of test accuracy on {where}: it degrades the deeper "
                           f"network {'more' if gd < gs else 'less' if gd > gs else 'as much'}.")
    return out


def compare(summaries: list[tuple[str, RecipeContext]]) -> list[str]:
    """The depth findings across several summaries of this recipe (e.g. the LeNet-5 rows of one run and the
    ResNet-20 rows of another), each named by its source; pairs within one summary are in its own report."""
    gaps: dict[tuple[int, str], list[tuple[tuple[str, bool, float], str]]] = {}
    for origin, ctx in summaries:
        for k, v in _gaps(ctx).items():
            gaps.setdefault(k, []).extend((g, origin) for g in v)
    return _depth_findings(gaps, across=True)


HEADER = ["network", "bits", "source STE", "start: train loss", "start: test acc.",
          "identity: end train loss", "identity: end test acc.", "identity: worst train loss",
          "identity: worst test acc.", "control: end train loss", "control: end test acc.",
          "control: worst train loss", "control: worst test acc.", "identity degraded vs start (seeds)",
          "identity worse than control (seeds)"]


def summarize(ctx: RecipeContext) -> str:
    lines = ["## Continuing with the identity STE, against continuing with the source STE (control)", "",
             f"Both continuations: phase 1 lr {SMALL_LR:g} (constant), phase 2 the normal schedule, from the same "
             "start (the network trained with the source STE). Mean ± std over seeds " + str(ctx.seeds) + ". "
             "*Worst* = the highest training loss / lowest test accuracy over the continuation's epochs. "
             f"Degradation criterion: training loss more than {LOSS_REL:.0%} higher or test accuracy more than "
             f"{ACC_DROP:g} points lower than the reference (the start, or the control's end on the same seed).", "",
             "TABLE"]
    rows: list[list] = []
    findings, plots, notes = [], [], []
    gaps: dict[tuple[int, str], list[tuple[str, bool, float]]] = {}  # (bits, source) -> [(label, deep, gap)]
    for name, model, _, _, deep, bits_list in NETS:
        net, label = _net_label(ctx, name, model, deep)
        keys = [fp_key(net, s) for s in ctx.seeds]
        for bits in bits_list:
            series_l, series_a, switch = [], [], None
            for color, src in zip(("C0", "C1"), SOURCES):
                keys += [q_key(net, bits, src, s) for s in ctx.seeds] + \
                    [k(net, bits, src, s, t) for s in ctx.seeds for t in ("identity", src) for k in (small_key, normal_key)]
                cmp = _compare(ctx, label, net, bits, src)
                if cmp is None:
                    continue
                row, text, series, gap = cmp
                rows.append(row)
                findings.append(text)
                if gap is not None:
                    gaps.setdefault((bits, src), []).append((label, deep, gap))
                for tag, cs, style in series:
                    n = min(len(c["x"]) for c in cs)
                    kw = {"color": color, "linestyle": style}
                    series_l.append((tag, cs[0]["x"][:n], [fmean(c["loss"][i] for c in cs) for i in range(n)], kw))
                    series_a.append((tag, cs[0]["x"][:n], [fmean(c["acc"][i] for c in cs) for i in range(n)], kw))
                if series:
                    switch = series[0][1][0]["switch"]
            for what, ser, ylabel in (("loss", series_l, "training loss"), ("accuracy", series_a, "test accuracy (%)")):
                p = line_plot(ctx.out / f"{net}_{bits}bit_identity_{what}.png", ser, "epoch of the continuation",
                              ylabel, f"{label}, {bits}-bit: identity STE vs control", vline=switch,
                              logy=what == "loss")
                if p:
                    plots.append(p)
        notes += errors_note(ctx, keys)
    lines[lines.index("TABLE")] = table(HEADER, rows, align="---" + "r" * 12)
    lines += ([""] + notes if notes else [])
    findings += _depth_findings({k: [(g, "") for g in v] for k, v in gaps.items()})
    lines += ["", "## Findings (computed from the table)", ""] + (findings or ["* no complete continuation to report."])
    phase = {"small": f"continuation, lr {SMALL_LR:g} phase", "normal": "continuation, normal schedule"}
    lines += cost_section(ctx, lambda r: f"{r.tags['model']} / {dataset_label(r.tags['dataset'])}: "
                          + phase.get(r.tags.get("phase"), "float" if r.tags.get("kind") == "fp" else "quantized"))
    if ctx.quick:
        lines.append("* Quick setting: 1 + 2 epochs on a 10000-image subset; these numbers only show that the pipeline runs.")
    lines += images_section("Curves (mean over seeds; solid: identity STE, dashed: control; dotted line: end of "
                            "the small-learning-rate phase; log-scale loss)", plots)
    return "\n".join(lines) + "\n"


register(Recipe("ste-instability", "continuing quantized-ReLU networks with the identity STE (Yin et al.)",
                runs, summarize, compare))
