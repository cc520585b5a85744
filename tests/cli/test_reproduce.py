"""``stbin reproduce``: list, unknown names, a --quick run on tiny data."""

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
