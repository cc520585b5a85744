"""stbin._io.atomic_write: the target is replaced whole, and gets the mode a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from stbin._io import atomic_write


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
def test_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode)


def test_checkpoints_and_metrics_honour_the_umask(tmp_path):
    import torch

    from stbin.training import save_checkpoint
    from stbin.training.metrics_log import write_metrics

    old = os.umask(0o022)
    try:
        c = save_checkpoint(tmp_path / "c.pt", {"model": {"name": "mlp", "kwargs": {}},
                                               "model_state": {"w": torch.zeros(2)}})
        paths = [c, *write_metrics(tmp_path, [{"epoch": 1, "loss": 0.1}])]
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644, p


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path):
    p = atomic_write(tmp_path / "f", lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, fail)
    assert p.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["f"]
