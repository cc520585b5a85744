"""User errors under torchrun: reported once (by rank 0), every rank exits with code 2."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

BAD = ["train", "--preset", "tiny", "--set", "train.threads=-1", "--no-progress"]


def _catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_a_rank_above_0_stays_silent_and_exits_2_when_stopped(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    env.pop("STBIN_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "stbin.cli.main", *BAD, "--out", str(tmp_path / "o")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _catches_sigterm(p.pid):  # it has met the error and now waits for torchrun's SIGTERM
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and err == "" and out == ""


def test_rank_0_reports_the_error_in_one_line(tmp_path, run_cli, assert_user_error):
    r = run_cli(*BAD, "--out", str(tmp_path / "o"), env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert_user_error(r, "train.threads must be an integer in [0, 4096]", "got -1")


def test_torchrun_two_processes(tmp_path):
    pytest.importorskip("torch.distributed.run")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29653",
                        "-m", "stbin.cli.main", *BAD, "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ours = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("stbin train: error")]
    assert ours == ["stbin train: error: train.threads must be an integer in [0, 4096] (0: torch's default), "
                    "got -1"], r.stderr
    codes = re.findall(r"exitcode\s+:\s*(-?\d+)", r.stderr)
    assert sorted(codes) == ["2", "2"], r.stderr  # both ranks (torchrun itself reports the failed launch)
    assert "Traceback" not in "\n".join(line for line in r.stderr.splitlines() if "stbin/" in line)
