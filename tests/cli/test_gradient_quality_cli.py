"""``stbin gradient-quality``: the real command on a real (tiny) training run; one-line errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from stbin.cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    proc = subprocess.run([sys.executable, "-m", "stbin.cli.main", "train", "--preset", "tiny", "--epochs", "2",
                           "--set", "model.hidden=[8,8]", "--set", "train.keep_checkpoints=5", "--set",
                           "eval.ensemble=0", "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_every_checkpoint_of_a_run(run_dir, tmp_path) -> None:
    out = tmp_path / "q"
    proc = subprocess.run([sys.executable, "-m", "stbin.cli.main", "gradient-quality", str(run_dir), "--batch", "4",
                           "--tolerance", "0.5", "--max-samples", "20", "--methods", "st,htanh", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(out / "quality.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["epoch"] for r in rows} == {"1", "2"} and {r["method"] for r in rows} == {"st", "htanh"}
    assert {"1.weight", "4.latent_weight", "7.weight", "all"} <= {r["tensor"] for r in rows}
    assert (out / "quality.png").read_bytes()[:8] == PNG
    report = (out / "report.md").read_text()
    assert "## Epoch 1" in report and "## Epoch 2" in report and "| layer | st | htanh |" in report
    assert "![quality.png](quality.png)" in report
    assert "Titsias & Lázaro-Gredilla" in report and "DisARM" not in report  # the reference that was used
    for line in report.splitlines():
        if line.startswith("| 4.latent_weight"):
            assert line.count("|") == 4  # one cell per method: the cells are not broken by the text


def test_plain_reference_option(run_dir, tmp_path) -> None:
    """--no-control-variate and --st-samples reach gradient_quality (the plain reference also converges)."""
    out = tmp_path / "p"
    proc = subprocess.run([sys.executable, "-m", "stbin.cli.main", "gradient-quality", str(run_dir), "--epochs", "1",
                           "--batch", "4", "--tolerance", "0.9", "--max-samples", "20", "--methods", "st",
                           "--no-control-variate", "--st-samples", "2", "--no-plot", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(out / "quality.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["epoch"] for r in rows} == {"1"} and int(rows[0]["n_samples"]) >= 10


@pytest.mark.parametrize("argv,msg", [
    (["--methods", "st,arm"], "not one"),
    (["--tolerance", "0"], "--tolerance must be in (0, 2)"),
    (["--epochs", "3"], "no checkpoint for epoch(s) [3]"),
    (["--reference", "exact"], "--reference must be one of"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--st-samples", "0"], "--st-samples must be at least 1, got 0"),
    (["--threads", "0"], "--threads must be an integer in [1, 4096], got 0"),
    (["--threads", "100000"], "--threads must be an integer in [1, 4096], got 100000"),
])
def test_bad_options_exit_2_with_one_line(run_dir, argv, msg, tmp_path, capsys) -> None:
    rc = main(["gradient-quality", str(run_dir), "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("stbin gradient-quality: error: ") and msg in err


def test_missing_path_and_damaged_checkpoint(tmp_path, capsys) -> None:
    assert main(["gradient-quality", str(tmp_path / "nothing")]) == 2
    assert "no run folder or checkpoint" in capsys.readouterr().err
    bad = tmp_path / "checkpoint-epoch0001.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["gradient-quality", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable stbin checkpoint" in err


def test_training_hook_logs_gradient_quality(tmp_path) -> None:
    """``log.gradient_quality_every = 2``: the figures appear in the records of epochs 2 (and not 1)."""
    import json
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "stbin.cli.main", "train", "--preset", "tiny", "--epochs", "2",
                           "--set", "model.hidden=[8,8]", "--set", "eval.ensemble=0", "--set",
                           "log.gradient_quality_every=2", "--set", "log.gradient_quality_samples=10",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("gq/") for k in recs[0])
    assert recs[1]["gq/n_samples"] == 10
    for m in ("st", "htanh", "tanh", "identity"):
        c = recs[1][f"gq/{m}/all/cosine"]
        assert -1.5 < c < 1.5 and recs[1][f"gq/{m}/all/cosine_hw"] >= 0


def test_bad_hook_value_is_a_one_line_error(tmp_path, capsys) -> None:
    rc = main(["train", "--preset", "tiny", "--set", "log.gradient_quality_every=-1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "log.gradient_quality_every must be an integer >= 0" in err
