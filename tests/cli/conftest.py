"""Shared helpers of the CLI tests: one way to run the command, one way to check a user error.

``run_cli(*args)`` runs ``python -m stbin.cli.main ARGS`` in a new interpreter (the real
command; ``inprocess=True`` calls the same entry point in this process, much faster, with
the same dispatcher and error handling). ``assert_user_error(result, *needles)`` checks the
contract for bad input: exit code 2, exactly one line on stderr of the form
``stbin CMD: error: ...`` containing every needle, and no traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch


def _run_cli(*args: str, timeout: int = 300, env: dict[str, str] | None = None,
             inprocess: bool = False) -> subprocess.CompletedProcess:
    if inprocess:
        from stbin.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse errors
                code = e.code if isinstance(e.code, int) else 2
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    full_env = None if env is None else {**os.environ, **env}
    if full_env is not None:
        full_env.pop("STBIN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "stbin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def _assert_user_error(r: subprocess.CompletedProcess, *needles: str, command: str | None = None) -> str:
    """The one-line error contract; returns the line."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    args: Sequence[str] = r.args if isinstance(r.args, (list, tuple)) else []
    cmd = command or next((a for a in args if not str(a).startswith("-") and "/" not in str(a)
                           and a not in (sys.executable, "stbin.cli.main")), None)
    if cmd is not None:
        assert lines[0].startswith(f"stbin {cmd}: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def run_cli():
    return _run_cli


@pytest.fixture
def assert_user_error():
    return _assert_user_error


# ---- crafted files shared by the bad-input tests (module-scoped: built once per test module) ----------

class _Evil:
    """A pickle that would run a shell command when loaded."""

    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/stbin-owned",))


def _flip(src: Path, dst: Path, at: float) -> Path:
    raw = bytearray(src.read_bytes())
    raw[int(at * (len(raw) - 1))] ^= 0x04
    dst.write_bytes(bytes(raw))
    return dst


def _tensor_byte(path: Path) -> int:
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    return info.header_offset + 30 + n + m + info.file_size // 2


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from stbin.training.config import build_config
    from stbin.training.trainer import train

    root = tmp_path_factory.mktemp("bad-input")
    w: dict[str, Path] = {"root": root}
    run = root / "run"
    train(build_config("tiny", overrides=[f'out_dir="{run}"', "data.options={n_train=64, n_test=32}", "train.epochs=2",
                                          "eval.ensemble=0"]), log=lambda s: None)
    w["run"], w["ck"] = run, run / "checkpoint-epoch0002.pt"
    raw = w["ck"].read_bytes()
    (root / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    w["truncated"] = root / "truncated.pt"
    bit = bytearray(raw)
    bit[_tensor_byte(w["ck"])] ^= 0x01
    (root / "bitflip.pt").write_bytes(bytes(bit))
    w["bitflip"] = root / "bitflip.pt"
    from stbin.training import load_checkpoint

    ck = load_checkpoint(w["ck"])
    torch.save({**ck, "version": 99}, root / "v99.pt")
    w["v99"] = root / "v99.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, root / "foreign.pt")
    w["foreign"] = root / "foreign.pt"
    with open(root / "malicious.pt", "wb") as f:
        pickle.dump({"format": "stbin-checkpoint", "x": _Evil()}, f)
    w["malicious"] = root / "malicious.pt"
    (root / "garbage.pt").write_bytes(os.urandom(4096))
    w["garbage"] = root / "garbage.pt"
    from stbin.training import save_checkpoint
    save_checkpoint(root / "noconfig.pt", {"model": ck["model"], "model_state": ck["model_state"]})
    w["noconfig"] = root / "noconfig.pt"
    (root / "empty").mkdir()
    w["empty"] = root / "empty"
    (root / "afile").write_text("a file, not a folder")
    w["afile"] = root / "afile"
    # config files
    (root / "latin1.toml").write_bytes('preset = "tiny"\n# caf\xe9\n'.encode("latin-1"))
    (root / "bad.toml").write_text("[optim\nlr = 0.1\n")
    (root / "unknown.toml").write_text('preset = "tiny"\n[optim]\nlrr = 0.1\n')
    (root / "good.toml").write_text('preset = "tiny"\n')
    (root / "strlist.toml").write_text('preset = "tiny"\n[eval]\nmodes = "mode"\n')
    for n in ("latin1", "bad", "unknown", "good", "strlist"):
        w[f"{n}_toml"] = root / f"{n}.toml"
    # CIFAR-10 folders: garbage, a malicious pickle, wrong shapes
    for name, content in (("cifar_garbage", os.urandom(1000)), ("cifar_evil", pickle.dumps(_Evil())),
                          ("cifar_shape", pickle.dumps({b"data": np.zeros((4, 100), np.uint8),
                                                        b"labels": [0, 1, 2, 3]}))):
        d = root / name
        d.mkdir()
        for f in ("test_batch", *[f"data_batch_{i}" for i in range(1, 6)]):
            (d / f).write_bytes(content)
        w[name] = d
    # deploy files
    from stbin.deploy import export_checkpoint
    from stbin.models import build_model

    kw = {"in_features": 12, "hidden": [16, 16], "num_classes": 3}
    save_checkpoint(root / "mlp.pt", {"model": {"name": "sbn_mlp", "kwargs": kw},
                                      "model_state": build_model("sbn_mlp", **kw).state_dict()})
    net = export_checkpoint(root / "mlp.pt", root / "good.stbn")
    sraw = (root / "good.stbn").read_bytes()
    (root / "truncated.stbn").write_bytes(sraw[:100])
    _flip(root / "good.stbn", root / "bitflip.stbn", 0.9)
    (root / "v9.stbn").write_bytes(sraw[:8] + (9).to_bytes(2, "little") + sraw[10:])
    (root / "pickle.stbn").write_bytes(pickle.dumps(_Evil()))
    # inconsistent widths, each op valid on its own: 64 units into a binary layer declaring 128 inputs
    from stbin.deploy import save as save_stbn
    nets = []
    for h in ([64, 64], [64, 128, 64]):
        kw = {"in_features": 12, "hidden": h, "num_classes": 3}
        save_checkpoint(root / "w.pt", {"model": {"name": "sbn_mlp", "kwargs": kw},
                                        "model_state": build_model("sbn_mlp", **kw).state_dict()})
        nets.append(export_checkpoint(root / "w.pt", root / "w.stbn"))
    (root / "w.pt").unlink()
    (root / "w.stbn").unlink()
    bad, donor = nets
    i = next(k for k, op in enumerate(bad.ops) if op.type == "bdense")
    bad.ops[i] = [op for op in donor.ops if op.type == "bdense"][1]  # 128 -> 64
    save_stbn(bad, root / "widths.stbn")
    for n in ("good", "truncated", "bitflip", "v9", "pickle", "widths"):
        w[f"{n}_stbn"] = root / f"{n}.stbn"
    return w
