"""``stbin reproduce``: list, unknown names, a --quick run on tiny data."""

import subprocess
import sys

from stbin.cli.main import main


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "activation-quantized" in out and "ste-instability" in out and "sbn-study" in out


def test_unknown_name_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "reproduce", "sbn-studdy"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "sbn-study" in r.stderr and "activation-quantized" in r.stderr


def test_bad_jobs_is_one_line_exit_2(tmp_path):
    for flag, value in (("--jobs", "0"), ("--epoch-scale", "-1")):
        r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "reproduce", "sbn-study", "--quick", flag, value,
                            "--out", str(tmp_path)], capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr


def test_quick_run_writes_table_and_plots(tmp_path, capsys):
    rc = main(["reproduce", "sbn-study", "--quick", "--out", str(tmp_path), "--set", 'data.name="synthetic"',
               "--set", "data.options={n_train=128, n_test=64, image_size=12}"])
    assert rc == 0
    assert "report:" in capsys.readouterr().out
    text = (tmp_path / "quick" / "sbn-study" / "README.md").read_text()
    assert "Setting: **quick" in text and "| BinaryNet" in text
    assert list((tmp_path / "quick" / "sbn-study").glob("*.png"))
