"""Without numba, the kernels raise an ImportError that says what to install."""

import subprocess
import sys

CODE = r"""
import sys
sys.modules["numba"] = None          # as if numba were not installed
import numpy as np, torch
import stbin.deploy as d             # packing, format and compiling need no numba
net = d.compile_model(torch.nn.Sequential(torch.nn.Linear(3, 2)))
d.from_bytes(d.to_bytes(net))
try:
    net(np.zeros((1, 3), np.float32))
except ImportError as e:
    print("IMPORT-ERROR:", e)
"""


def test_missing_numba_gives_install_hint():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "IMPORT-ERROR:" in r.stdout and "pip install 'stbin[deploy]'" in r.stdout
