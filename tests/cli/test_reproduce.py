"""``stbin reproduce``: list, unknown names, a --quick run on tiny data."""

import subprocess
import sys

from stbin.cli.main import main


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "activation-quantized" in out and "ste-instability" in out and "sbn-study" in out


def test_unknown_name_is_one_line_exit_2(run_cli, assert_user_error):
    assert_user_error(run_cli("reproduce", "sbn-studdy"), "sbn-study", "activation-quantized")


def test_bad_jobs_is_one_line_exit_2(tmp_path, run_cli, assert_user_error):
    for flag, value in (("--jobs", "0"), ("--epoch-scale", "-1")):
        assert_user_error(run_cli("reproduce", "sbn-study", "--quick", flag, value, "--out", str(tmp_path)), flag)


def test_quick_run_writes_table_and_plots(tmp_path, capsys):
    rc = main(["reproduce", "sbn-study", "--quick", "--out", str(tmp_path), "--set", 'data.name="synthetic"',
               "--set", "data.options={n_train=128, n_test=64, image_size=12}"])
    assert rc == 0
    assert "report:" in capsys.readouterr().out
    text = (tmp_path / "quick" / "sbn-study" / "README.md").read_text()
    assert "Setting: **quick" in text and "| BinaryNet" in text
    assert list((tmp_path / "quick" / "sbn-study").glob("*.png"))


def test_list_runs_follows_seeds_and_dataset(capsys):
    assert main(["reproduce", "ste-instability", "--list-runs", "--seeds", "2", "--dataset", "fashion_mnist"]) == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "resnet20-fashion_mnist-q2-relu-to-identity-small-s1" in keys and "lenet5-fp-s1" in keys
    assert not any(k.endswith("-s2") for k in keys) and len(keys) == len(set(keys))


def test_bad_dataset_and_only_pattern_are_one_line_exit_2(tmp_path):
    for extra, words in ((["--dataset", "fashion-mnst"], ["fashion-mnst", "fashion_mnist"]),
                         (["--only", "resnet99-*"], ["--only", "resnet99-*"])):
        r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "reproduce", "activation-quantized", "--quick",
                            "--out", str(tmp_path), *extra], capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert all(w in r.stderr for w in words)
        assert not (tmp_path / "quick" / "runs").exists()  # checked before any run starts


def test_unavailable_device_fails_before_any_run(tmp_path):
    import torch

    bad = "cuda" if not torch.cuda.is_available() else "tpu"
    r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "reproduce", "sbn-study", "--quick", "--device", bad,
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and bad in r.stderr
    assert not (tmp_path / "quick").exists()


def test_help_is_plain_text(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "::" not in out and "--dataset" in out and "--only" in out
