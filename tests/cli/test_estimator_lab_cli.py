"""``stbin estimators``: the real command with --quick, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from stbin.cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_run_writes_csv_plots_and_report(tmp_path) -> None:
    out = tmp_path / "lab"
    proc = subprocess.run([sys.executable, "-m", "stbin.cli.main", "estimators", "--quick", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and str(out / "report.md") in proc.stdout
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {"st", "det_htanh", "det_tanh", "det_identity", "reinforce", "reinforce_baseline", "arm", "disarm",
               "concrete:0.1", "concrete:1", "st_concrete:0.1", "st_concrete:1"}
    prot = [r for r in rows if r["experiment"] == "protocol"]
    assert {r["estimator"] for r in prot} == methods
    assert {r["epoch"] for r in prot} == {"1", "100"}
    assert {"layer1", "layer2", "layer3", "output", "all", "0.weight"} <= {r["tensor"] for r in prot}
    assert any(r["experiment"] == "sweep:depth" for r in rows)
    for name in ("estimators_epoch1.png", "estimators_epoch100.png", "sweeps.png"):
        assert (out / name).read_bytes()[:8] == PNG
    report = (out / "report.md").read_text()
    assert "## Headline (snapshot after 100 epochs)" in report
    assert "`M=1 / M=100`" in report and "## Findings" in report
    for m in methods:
        assert f"| {m} |" in report


@pytest.mark.parametrize("argv,msg", [
    (["--methods", "st,foo"], "unknown gradient estimator 'foo'"),
    (["--epochs", "1,x"], "--epochs must be comma-separated integers"),
    (["--estimates", "1"], "--estimates must be between 2 and 1000000, got 1"),
    (["--estimates", "100000000000"], "--estimates must be between 2 and 1000000, got 100000000000"),
    (["--epochs", "1,100000000"], "--epochs must be between 0 and 100000, got '1,100000000'"),
    (["--epochs=-1,2"], "--epochs must be between 0 and 100000, got '-1,2'"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--threads", "0"], "--threads must be an integer in [1, 4096], got 0"),
    (["--threads", "100000"], "--threads must be an integer in [1, 4096], got 100000"),
])
def test_bad_options_exit_2_with_one_line(argv, msg, tmp_path, run_cli, assert_user_error) -> None:
    assert_user_error(run_cli("estimators", "--out", str(tmp_path / "x"), "--no-progress", *argv, inprocess=True), msg)


def test_unwritable_output_is_a_one_line_error(tmp_path, run_cli, assert_user_error) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(run_cli("estimators", "--quick", "--no-progress", "--out", str(blocker / "sub"), inprocess=True))


def test_help_describes_the_protocol(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["estimators", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "2-5-5-5" in out and "--quick" in out and "report.md" in out
