"""The run-folder lock: one run per folder, stale locks of dead processes taken over, leftovers cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stbin.training.lock import LOCK_NAME, RunFolderInUse, acquire, release, run_folder_lock
from stbin.training.config import build_config
from stbin.training.trainer import train


def _holder(folder):
    """A process that takes the lock of ``folder`` and waits (killed by the test)."""
    code = textwrap.dedent(f"""
        import sys, time
        from stbin.training.lock import acquire
        acquire({str(folder)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(RunFolderInUse, match=f"in use by another stbin run \\(PID {p.pid}\\)"):
            acquire(tmp_path)
        assert isinstance(RunFolderInUse("x"), OSError)  # the CLI reports it in one line, exit 2
    finally:
        p.kill()
        p.wait()


def test_the_lock_of_a_killed_process_is_stale(tmp_path):
    p = _holder(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(p.pid)  # left behind ...
    fd = acquire(tmp_path)  # ... and taken over
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    release(tmp_path, fd)
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_released_on_error_and_leftover_temporaries_are_removed(tmp_path):
    stray = tmp_path / ".checkpoint-epoch0003.pt.abc123.tmp"
    stray.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"  # not ours: not hidden
    keep.write_text("x")
    with pytest.raises(KeyError):
        with run_folder_lock(tmp_path):
            assert not stray.exists() and keep.exists()
            with pytest.raises(RunFolderInUse):
                acquire(tmp_path)  # another open file description: refused even in the same process
            raise KeyError("boom")
    fd = acquire(tmp_path)
    release(tmp_path, fd)


def test_train_refuses_a_folder_in_use(tmp_path):
    out = tmp_path / "run"
    p = _holder(out)
    try:
        cfg = build_config("tiny", overrides=[f'out_dir="{out}"', "data.options={n_train=64, n_test=32}"])
        with pytest.raises(RunFolderInUse, match=f"PID {p.pid}"):
            train(cfg, log=lambda s: None)
        assert not list(out.glob("*.pt"))
    finally:
        p.kill()
        p.wait()


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    from stbin.training import distributed as D

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert D.env_rank() == 1
    p = _holder(tmp_path)
    try:
        with run_folder_lock(tmp_path, enabled=D.env_rank() == 0):
            pass  # rank 1 does not touch the lock
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunFolderInUse):
            with run_folder_lock(tmp_path, enabled=D.env_rank() == 0):
                pass
    finally:
        p.kill()
        p.wait()
