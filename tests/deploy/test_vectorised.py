"""Threshold-and-pack is vectorised: the compiled loops (compiled afresh, not from numba's cache, whose
assembly cannot be inspected) use vector compares, variable shifts and ors on ymm / zmm registers."""

import os
import platform
import subprocess
import sys

import pytest

CODE = r"""
import re, numpy as np
from stbin.deploy import _float_loops as F
Y = np.zeros((2, 70, 8, 8), np.float32); S = np.ones(70, np.float32); T = np.zeros(70, np.float32)
F.float_sign_pack_nchw_serial(Y, S, T, np.zeros((2, 8, 8, 2), np.uint64))
F.float_sign_pack_serial(Y[:, :, 0, 0].copy(), S, T, np.zeros((2, 2), np.uint64))
for f in (F.float_sign_pack_nchw_serial, F.float_sign_pack_serial):
    asm = list(f.inspect_asm().values())[0]
    shifts, ors = re.findall(r"vpsllvq\s[^\n]*%[yz]mm", asm), re.findall(r"vpor\w*\s[^\n]*%[yz]mm", asm)
    print(f.py_func.__name__, len(shifts), len(ors))
"""


def _avx2() -> bool:
    try:
        return platform.machine() in ("x86_64", "AMD64") and " avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif(not _avx2(), reason="needs an x86-64 CPU with AVX2")
def test_threshold_and_pack_loops_are_vectorised(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    rows = dict((line.split()[0], [int(v) for v in line.split()[1:]]) for line in r.stdout.strip().splitlines())
    for name in ("float_sign_pack_nchw_serial", "float_sign_pack_serial"):
        shifts, ors = rows[name]
        assert shifts > 0 and ors > 0, (name, rows)
