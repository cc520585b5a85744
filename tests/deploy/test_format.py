"""The .stbn file: round trip; version, length, checksum and shape checks refuse bad files."""

import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from stbin.deploy import DeployFormatError, compile_model, from_bytes, load, save, to_bytes
from stbin.deploy.format import FORMAT_VERSION, MAGIC
from stbin.models import build_model


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return compile_model(build_model("sbn_mlp", in_features=12, hidden=(70, 65), num_classes=3).eval(),
                         meta={"note": "test"})


def rehash(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def test_round_trip_file(net, tmp_path):
    p = save(net, tmp_path / "m.stbn")
    back = load(p)
    assert back.meta["note"] == "test" and back.meta["input_shape"] == [12]
    assert [o.type for o in back.ops] == [o.type for o in net.ops]
    for a, b in zip(net.ops, back.ops):
        assert a.attrs == b.attrs and a.arrays.keys() == b.arrays.keys()
        for k in a.arrays:
            np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
            assert a.arrays[k].dtype == b.arrays[k].dtype
    x = np.random.default_rng(0).standard_normal((10, 12)).astype(np.float32)
    np.testing.assert_array_equal(back(x), net(x))
    data = p.read_bytes()
    assert data[:8] == MAGIC and struct.unpack_from("<H", data, 8)[0] == FORMAT_VERSION
    assert struct.unpack_from("<Q", data, 16)[0] == len(data)


def test_truncated_files_are_refused(net):
    data = to_bytes(net)
    for n in sorted({0, 3, 8, 20, 24, 40, 100, len(data) // 2, len(data) - 33, len(data) - 1}):
        with pytest.raises(DeployFormatError, match="truncated"):
            from_bytes(data[:n])


def test_trailing_bytes_are_refused(net):
    with pytest.raises(DeployFormatError, match="unexpected bytes"):
        from_bytes(to_bytes(net) + b"\0")


def test_corrupted_files_are_refused(net):
    data = to_bytes(net)
    rng = np.random.default_rng(0)
    for pos in list(rng.integers(24, len(data), size=20)) + [len(data) - 1, 30]:
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(DeployFormatError, match="checksum mismatch"):
            from_bytes(bytes(bad))


def test_foreign_and_other_version_files_are_refused(net, tmp_path):
    data = to_bytes(net)
    with pytest.raises(DeployFormatError, match="bad magic"):
        from_bytes(b"PK\x03\x04" + data[4:])
    v2 = bytearray(data)
    struct.pack_into("<H", v2, 8, 2)
    with pytest.raises(DeployFormatError, match="version 2 is not supported"):
        from_bytes(rehash(bytes(v2[:-32])))
    ckpt = tmp_path / "c.pt"
    torch.save({"a": 1}, ckpt)
    with pytest.raises(DeployFormatError, match="bad magic"):
        load(ckpt)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.stbn")


def _rewrite_header(data: bytes, edit) -> bytes:
    """Change the JSON header and re-seal the file (valid length and checksum)."""
    _, _, _, hlen, _ = struct.unpack_from("<8sHHIQ", data, 0)
    header = json.loads(data[24: 24 + hlen])
    edit(header)
    new = json.dumps(header).encode()
    head = 24 + len(new)
    pad = (-head) % 64
    old_head = 24 + hlen
    payload = data[old_head + (-old_head) % 64: -32]
    total = head + pad + len(payload) + 32
    body = struct.pack("<8sHHIQ", MAGIC, FORMAT_VERSION, 0, len(new), total) + new + b"\0" * pad + payload
    return rehash(body)


def test_inconsistent_shapes_are_refused_even_with_a_valid_checksum(net):
    data = to_bytes(net)
    assert from_bytes(_rewrite_header(data, lambda h: None)).ops  # the helper itself keeps a valid file

    def wrong_nbytes(h):
        h["ops"][0]["arrays"]["weight"]["shape"] = [70, 13]

    def wrong_threshold_len(h):
        op = next(o for o in h["ops"] if o["type"] == "bdense")
        a = op["arrays"]["T"]
        a["shape"], a["nbytes"] = [a["shape"][0] - 1], a["nbytes"] - 4

    def outside(h):
        h["ops"][-1]["arrays"]["weight"]["offset"] = 10 ** 9

    def unknown(h):
        h["ops"][1]["type"] = "softmax"

    def wrong_features(h):
        next(o for o in h["ops"] if o["type"] == "bdense")["attrs"]["in_features"] = 1000

    def wrong_order(h):
        h["ops"][1], h["ops"][2] = h["ops"][2], h["ops"][1]

    def bad_input_shape(h):
        h["meta"]["input_shape"] = [0]

    for edit, match in [(wrong_nbytes, "has shape"), (wrong_threshold_len, r"op \d \(bdense\): array 'T' has shape \(64,\), expected \(65,\)"),
                        (outside, "outside the payload"), (unknown, "unknown op type"),
                        (wrong_features, "does not fit"), (wrong_order, "takes bits input but gets float"),
                        (bad_input_shape, "bad input_shape")]:
        with pytest.raises(DeployFormatError, match=match):
            from_bytes(_rewrite_header(data, edit))


def test_deploy_format_error_is_a_value_error():
    assert issubclass(DeployFormatError, ValueError)
