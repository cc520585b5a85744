"""The same conventions in every command: ``--set model.KEY=VALUE`` wherever a model is
built (``stbin summary`` as ``stbin train``, the old short form deprecated), and a missing
matplotlib found before training starts (``stbin train --no-plots`` needs none)."""

from __future__ import annotations

import pytest

from stbin.cli.main import main


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def params_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("- parameters:"))


def test_summary_takes_the_model_keys_of_train(capsys):
    rc, new, err = run_main(capsys, "summary", "--model", "mlp", "--set", "model.hidden=[32,16]")
    assert rc == 0 and err == ""
    rc, default, _ = run_main(capsys, "summary", "--model", "mlp")
    assert params_line(new) != params_line(default)
    # hidden [32, 16] on 784 inputs with BN: 784*32 + (32*16) + 16*10+10 weights, BN 2*(32+16)
    assert params_line(new).startswith(f"- parameters: {784 * 32 + 32 * 16 + 16 * 10 + 10 + 2 * (32 + 16):,} ")


def test_summary_old_short_form_still_works_with_a_deprecation_note(capsys):
    rc, old, err = run_main(capsys, "summary", "--model", "mlp", "--set", "hidden=[32,16]")
    assert rc == 0 and "deprecated" in err and "model.hidden" in err
    _, new, _ = run_main(capsys, "summary", "--model", "mlp", "--set", "model.hidden=[32,16]")
    assert old == new


def test_summary_preset_with_model_keys(capsys):
    rc, out, _ = run_main(capsys, "summary", "--preset", "tiny", "--set", "model.weights=real")
    assert rc == 0 and "(0 binary," in params_line(out)


@pytest.mark.parametrize("argv, expected", [
    (["--model", "mlp", "--set", "optim.lr=0.1"], "'optim.lr'"),
    (["--model", "mlp", "--set", "model.hiden=3"], "did you mean 'hidden'"),
    (["--model", "mlp", "--set", "model.hidden"], "not of the form"),
])
def test_summary_bad_set_is_one_line_naming_the_key(capsys, argv, expected):
    rc, out, err = run_main(capsys, "summary", *argv)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and expected in err, err


def test_summary_set_with_checkpoint_is_refused_not_ignored(tmp_path, capsys):
    rc, _, _ = run_main(capsys, "train", "--preset", "tiny", "--epochs", "1", "--no-progress", "--no-plots",
                        "--set", "model.hidden=[8]", "--out", str(tmp_path))
    assert rc == 0
    ckpt = str(tmp_path / "checkpoint-epoch0001.pt")
    rc, out, err = run_main(capsys, "summary", "--checkpoint", ckpt, "--set", "model.hidden=[4]")
    assert rc == 2 and "--checkpoint" in err and out == ""
    assert run_main(capsys, "summary", "--checkpoint", ckpt)[0] == 0


def test_train_checks_matplotlib_before_training(tmp_path, capsys, monkeypatch):
    import stbin.reporting.figures as figures

    monkeypatch.setattr(figures, "matplotlib_available", lambda: False)
    out_dir = tmp_path / "run"
    rc, out, err = run_main(capsys, "train", "--preset", "tiny", "--epochs", "1", "--no-progress",
                            "--out", str(out_dir))
    assert rc == 2 and "matplotlib" in err and "--no-plots" in err and len(err.strip().splitlines()) == 1
    assert "epoch" not in out and not out_dir.exists()  # nothing trained, nothing written
    rc, out, err = run_main(capsys, "train", "--preset", "tiny", "--epochs", "1", "--no-progress", "--no-plots",
                            "--out", str(out_dir))
    assert rc == 0 and (out_dir / "report.md").is_file() and not list(out_dir.glob("*.png"))
