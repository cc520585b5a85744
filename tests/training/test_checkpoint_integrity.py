"""Checkpoint digests: every load verifies the SHA-256 of the payload; damaged files are refused
(or, when resuming a run folder, skipped for the newest intact one with a warning)."""

from __future__ import annotations

import warnings
import zipfile

import pytest
import torch

from stbin.models import build_model
from stbin.training.checkpoint import (CHECKPOINT_VERSION, CheckpointError, UnverifiedCheckpointWarning,
                                       latest_checkpoint, load_checkpoint, payload_digest, save_checkpoint)

KW = {"in_features": 12, "hidden": [16, 16], "num_classes": 3}


def _state(seed=0):
    torch.manual_seed(seed)
    model = build_model("sbn_mlp", **KW)
    return {"model": {"name": "sbn_mlp", "kwargs": KW}, "model_state": model.state_dict(), "epoch": seed,
            "metrics": [{"epoch": 1, "loss": 0.5}], "rng_state": {"torch": torch.get_rng_state()}}


def _tensor_offsets(path):
    """Byte offsets of the data of every tensor record in a torch zip file."""
    offs = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if "/data/" in info.filename and info.file_size:
                with open(path, "rb") as f:
                    f.seek(info.header_offset + 26)
                    n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
                offs.append((info.header_offset + 30 + n + m, info.file_size))
    return offs


def test_the_digest_is_stored_and_a_clean_file_loads(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", _state())
    ck = load_checkpoint(p)
    assert ck["version"] == CHECKPOINT_VERSION == 2 and len(ck["digest"]) == 64
    assert ck["digest"] == payload_digest(ck)


def test_the_digest_sees_every_value():
    a = _state()
    d = payload_digest(a)
    b = _state()
    b["model_state"]["1.weight"] = b["model_state"]["1.weight"].clone()
    b["model_state"]["1.weight"].view(-1)[3] = torch.nextafter(b["model_state"]["1.weight"].view(-1)[3],
                                                              torch.tensor(1e9))
    assert payload_digest(b) != d
    for change in ({"epoch": 1}, {"epoch": 0.0}, {"metrics": [{"epoch": 1, "loss": 0.25}]},
                   {"metrics": ({"epoch": 1, "loss": 0.5},)}):
        assert payload_digest({**a, **change}) != d, change


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_one_flipped_bit_in_any_tensor_is_refused(tmp_path, where):
    p = save_checkpoint(tmp_path / "c.pt", _state())
    raw = bytearray(p.read_bytes())
    for k, (off, size) in enumerate(_tensor_offsets(p)):
        bad = bytearray(raw)
        bad[off + int(where * (size - 1))] ^= 0x10
        q = tmp_path / f"bad{k}.pt"
        q.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match=f"{q} is damaged"):
            load_checkpoint(q)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", _state())
    raw = p.read_bytes()
    for n in (0, 10, len(raw) // 2, len(raw) - 1):
        q = tmp_path / f"t{n}.pt"
        q.write_bytes(raw[:n])
        with pytest.raises(CheckpointError, match=str(q)):
            load_checkpoint(q)


def test_an_edited_checkpoint_is_refused(tmp_path):
    """Changed with torch.save but the old digest kept: refused (an accident, not an attack)."""
    p = save_checkpoint(tmp_path / "c.pt", _state())
    ck = load_checkpoint(p)
    ck["model_state"]["1.weight"] = ck["model_state"]["1.weight"] * 2
    torch.save(ck, p)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(p)


def test_version_1_loads_with_a_warning_and_unknown_versions_are_refused(tmp_path):
    old = {"format": "stbin-checkpoint", "version": 1, **_state()}
    torch.save(old, tmp_path / "v1.pt")
    with pytest.warns(UnverifiedCheckpointWarning, match="without digest"):
        ck = load_checkpoint(tmp_path / "v1.pt")
    assert torch.equal(ck["model_state"]["1.weight"], old["model_state"]["1.weight"])
    torch.save({**old, "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v99.pt")


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    for e in (1, 2, 3):
        save_checkpoint(tmp_path / f"checkpoint-epoch{e:04d}.pt", _state(e))
    newest = tmp_path / "checkpoint-epoch0003.pt"
    raw = bytearray(newest.read_bytes())
    off, size = _tensor_offsets(newest)[0]
    raw[off + size // 2] ^= 1
    newest.write_bytes(bytes(raw))
    seen = []
    ck = latest_checkpoint(tmp_path, warn=seen.append)
    assert ck["epoch"] == 2 and ck["_path"].endswith("checkpoint-epoch0002.pt")
    assert len(seen) == 1 and "checkpoint-epoch0003.pt" in seen[0] and "damaged" in seen[0]
    assert "\n" not in seen[0]
    with pytest.raises(CheckpointError, match="damaged"):  # a file named explicitly is refused
        latest_checkpoint(newest)


def test_init_from_refuses_a_damaged_checkpoint(tmp_path):
    from stbin.training.trainer import init_weights

    p = save_checkpoint(tmp_path / "c.pt", _state())
    raw = bytearray(p.read_bytes())
    off, size = _tensor_offsets(p)[1]
    raw[off] ^= 0x80
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        init_weights(build_model("sbn_mlp", **KW), p)


def test_a_checkpoint_round_trips_without_warnings(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", _state())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(p)
