"""docs/results.md from results.json files: python -m stbin.recipes.results_doc."""

import json
import re
import subprocess
import sys

import pytest

from stbin.recipes import run_recipe
from stbin.recipes.results_doc import load_summary, main

TINY = ['data.name="synthetic"', "data.options={n_train=128, n_test=64, image_size=28}"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    run_recipe("activation-quantized", out, quick=True, overrides=TINY, log=lambda s: None,
               only=["lenet5-q2-*", "lenet5-q4-relu-s0"])
    return out


def _tables(text):
    """Every Markdown table as a list of rows (header first), parsed from the pipes."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_document_is_the_recipe_report_computed_from_results_json(reproduced, tmp_path):
    doc = tmp_path / "docs" / "results.md"
    assert main([str(reproduced), "--quick", "--output", str(doc)]) == 0
    text = doc.read_text()
    report = (reproduced / "quick" / "activation-quantized" / "README.md").read_text()
    table = next(t for t in _tables(report) if t[0][0] == "network")
    assert table in _tables(text)  # the same numbers as the recipe's own report
    for t in _tables(text):  # every table: a header, a delimiter row, rows of the header's width
        assert set("".join(t[1])) <= set("-:") and all(len(r) == len(t[0]) for r in t)
    assert "### Findings (computed from the table)" in text and "best test accuracy with the" in text
    assert "Command: `stbin reproduce activation-quantized --out" in text
    pngs = sorted(p.name for p in (tmp_path / "docs" / "results" / "activation-quantized").glob("*.png"))
    assert "lenet5_2bit_loss.png" in pngs and "](results/activation-quantized/lenet5_2bit_loss.png)" in text
    # the findings follow the numbers: swap two cells' accuracies in the file and the sentence changes
    f = reproduced / "quick" / "activation-quantized" / "results.json"
    data = json.loads(f.read_text())
    for s in data["runs"]:
        if s.startswith("lenet5-q2-identity"):
            data["runs"][s]["test"]["mode"] = 100.0
    g = tmp_path / "edited.json"
    g.write_text(json.dumps(data))
    assert main([str(g), "--output", str(tmp_path / "x.md")]) == 0
    assert "2 bits: best test accuracy with the identity STE (100.00%" in (tmp_path / "x.md").read_text()


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(recipe="activation-quantised"), ["activation-quantized"]),
    (lambda d: d.update(seeds=[]), ["'seeds'"]),
    (lambda d: d["runs"]["lenet5-fp-s0"].update(test={"mode": 250.0}), ["lenet5-fp-s0", "percentage"]),
    (lambda d: d["runs"]["lenet5-fp-s0"].update(history=[{"loss": 1}]), ["lenet5-fp-s0", "epoch"]),
    (lambda d: d.update(runs=[]), ["'runs'"]),
])
def test_bad_results_json_is_one_line_exit_2(reproduced, tmp_path, edit, words):
    data = json.loads((reproduced / "quick" / "activation-quantized" / "results.json").read_text())
    edit(data)
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError):
        load_summary(bad)
    r = subprocess.run([sys.executable, "-m", "stbin.recipes.results_doc", str(bad), "--output",
                        str(tmp_path / "out.md")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and all(w in r.stderr for w in words)
    assert not (tmp_path / "out.md").exists()


def test_missing_and_non_json_inputs(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    for path, word in ((tmp_path / "nope", "no such file"), (tmp_path / "results.json", "not JSON"),
                       (tmp_path / "empty-dir", "no results.json")):
        if word == "no results.json":
            path.mkdir()
        r = subprocess.run([sys.executable, "-m", "stbin.recipes.results_doc", str(path), "--output",
                            str(tmp_path / "o.md")], capture_output=True, text=True)
        assert r.returncode == 2 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_archived_summary_without_histories_still_gives_the_continuations(tmp_path):
    """A results.json written before runs kept their per-epoch history (docs/results/ste-instability) still
    yields every finished continuation's start and end test accuracy, computed from the file; the values
    that need a history (losses, worst epoch) say so instead of dropping the row."""
    src = tmp_path / "ste-instability" / "results.json"
    src.parent.mkdir()
    summary = json.loads(open("docs/results/ste-instability/results.json").read())
    for rec in summary["runs"].values():
        rec.pop("history", None)
    src.write_text(json.dumps(summary))
    out = tmp_path / "results.md"
    assert main([str(tmp_path), "--output", str(out), "--figures", str(tmp_path / "fig")]) == 0
    text = out.read_text()
    assert "no complete continuation" not in text
    runs = summary["runs"]
    done = [k for k, r in runs.items() if re.search(r"-to-identity-s\d+$", k) and "error" not in r and "error" not in
            runs[r["init_from"]] and "error" not in runs[runs[r["init_from"]]["init_from"]]]
    assert done, "the archived summary has finished identity continuations"
    rows = [r for t in _tables(text) if t[0][:3] == ["network", "bits", "source STE"] for r in t[2:]]
    assert len(rows) == len({k.rsplit("-s", 1)[0] for k in done})  # one row per (network, bits, source STE)
    for r in rows:
        assert r[3] == "—" and r[4] != "—" and r[6] != "—"  # no start loss recorded; start and end accuracies
    group = sorted(done)[0].rsplit("-s", 1)[0]  # one (network, bits, source STE): its seeds' start accuracy
    starts = [runs[runs[runs[k]["init_from"]]["init_from"]]["test"]["mode"] for k in done if k.startswith(group + "-s")]
    assert any(r[4].startswith(f"{sum(starts) / len(starts):.2f}") for r in rows), (starts, rows)


def test_depth_finding_across_two_summaries_is_computed_from_both(tmp_path):
    """The identity STE's instability on a shallow (LeNet-5) and a deep (ResNet-20) network measured in two
    separate reproductions: the document compares them in one sentence per (bits, source STE), with both
    gaps computed from the files (a crafted deep summary whose identity continuations end 5 points below
    their controls), and names each summary."""
    shallow = json.loads(open("docs/results/ste-instability/results.json").read())
    deep = json.loads(json.dumps(shallow).replace('"lenet5-', '"resnet20-fashion_mnist-'))
    deep["dataset"] = "fashion_mnist"
    runs = deep["runs"]
    crafted = set()
    for k, r in runs.items():
        m = re.fullmatch(r"(resnet20-fashion_mnist-q(\d)-(\w+?))-to-identity-s(\d+)", k)
        ctl = runs.get(f"{m.group(1)}-to-{m.group(3)}-s{m.group(4)}") if m else None
        if m and "error" not in r and ctl and "error" not in ctl:
            r["test"]["mode"] = ctl["test"]["mode"] - 5.0
            crafted.add((int(m.group(2)), m.group(3)))
    assert crafted, "the archived summary has finished continuations with a control"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(shallow))
    (tmp_path / "b" / "results.json").write_text(json.dumps(deep))
    out = tmp_path / "results.md"
    assert main([str(tmp_path / "a"), "--output", str(out), "--figures", str(tmp_path / "f1")]) == 0
    assert "findings across the summaries" not in out.read_text()  # one summary: nothing to compare
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out), "--figures",
                 str(tmp_path / "f2")]) == 0
    text = out.read_text()
    section = text.split("findings across the summaries above", 1)[1]
    sentences = [s for s in section.splitlines() if s.startswith("* Depth")]
    assert len(sentences) == len(crafted)
    for s in sentences:
        assert "-5.00 on ResNet-20 / Fashion-MNIST" in s and "LeNet-5 / MNIST (`" in s, s
        shallow_gap = float(re.search(r"ends ([+-]\d+\.\d+) points of test accuracy on LeNet-5", s).group(1))
        assert s.endswith("it degrades the deeper network " + ("more." if shallow_gap > -5 else "less."))


def test_report_head_names_the_datasets_that_ran_not_the_deep_rows_that_did_not():
    """A LeNet-only run of a recipe whose deep rows default to CIFAR-10 says MNIST ran, not 'CIFAR-10'."""
    from stbin.recipes.summary import report_head

    lenet_only = {"seeds": [0], "dataset": "cifar10", "runs": {
        "lenet5-fp-s0": {"dataset": "mnist", "time_s": 1.0},
        "resnet20-cifar10-fp-s0": {"error": "not run: not selected (--only)"}}}
    text = "\n".join(report_head(lenet_only, "ste-instability"))
    assert "Dataset of the finished runs: MNIST (no deep network's row on CIFAR-10 finished)." in text
    assert "deep networks' rows: CIFAR-10" not in text
    with_deep = {"seeds": [0], "dataset": "fashion_mnist", "runs": {
        "lenet5-fp-s0": {"dataset": "mnist", "time_s": 1.0},
        "resnet20-fashion_mnist-fp-s0": {"dataset": "fashion_mnist", "time_s": 1.0}}}
    assert "Dataset of the deep networks' rows: Fashion-MNIST (`--dataset fashion_mnist`)." in "\n".join(
        report_head(with_deep, "ste-instability"))
