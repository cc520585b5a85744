"""The deployable file format (``.stbn``), version 1.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"STBINNET"
    8       2     format version (uint16) = 1
    10      2     reserved (0)
    12      4     header length H in bytes (uint32)
    16      8     total file length L in bytes, trailer included (uint64)
    24      H     header: UTF-8 JSON (see below)
    ...           zero padding to a multiple of 64
    P       ...   payload: the arrays, each at a 64-byte aligned offset from P, raw C order
    L-32    32    SHA-256 of bytes [0, L-32)

Header JSON::

    {"format": "stbin-deploy", "version": 1,
     "meta": {"input_shape": [...], "model": {...}, "stbin_version": "...", ...},
     "ops": [{"type": "bdense", "attrs": {...},
              "arrays": {"weight": {"dtype": "<u8", "shape": [M, KW], "offset": o, "nbytes": n}, ...}},
             ...]}

Array dtypes: ``<u8`` (bit-packed binary weights, see :mod:`stbin.deploy.packing`),
``<f4`` (float weights, biases, float thresholds), ``<i4`` (integer thresholds and their
directions). :func:`load` checks, in order: the magic, the version, the file length
(truncation), the SHA-256 (corruption), the header, every array's dtype/shape/extent and
every op's arrays and attributes (its registered :class:`~stbin.deploy.ops.OpType`), and the
shapes of the whole graph from the declared input shape (each op's input width / shape equals
the previous op's output and fits its arrays), and raises :class:`DeployFormatError` (a
ValueError) with a one-line message naming the op and the field on the first failure.

The SHA-256 guards against **accidents** (truncation, bit flips) only: anyone can write a
file with a valid digest. What protects the engine from a crafted file is the checks above
(and the kernels' own checks of their arrays before any compiled loop runs).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from stbin._io import atomic_write
from stbin.deploy.engine import DeployedNet
from stbin.deploy.ops import OPS, Op
from stbin.deploy.ops.base import MAX_DIM

MAGIC = b"STBINNET"
FORMAT_NAME = "stbin-deploy"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<8sHHIQ")  # 24 bytes
_DIGEST = 32
_ALIGN = 64
_DTYPES = {"<u8": np.uint64, "<f4": np.float32, "<i4": np.int32}


class DeployFormatError(ValueError):
    """A deploy file that is truncated, corrupted, foreign, of another version or inconsistent."""


def _dtype_code(a: np.ndarray) -> str:
    for code, dt in _DTYPES.items():
        if a.dtype == dt:
            return code
    raise ValueError(f"array dtype {a.dtype} cannot be stored (uint64, float32 or int32)")


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def to_bytes(net: DeployedNet) -> bytes:
    """Serialise ``net`` to the bytes of a version-1 file."""
    ops_json, chunks, offset = [], [], 0
    for op in net.ops:
        arrays = {}
        for name, a in op.arrays.items():
            code = _dtype_code(a)
            raw = np.ascontiguousarray(a).astype(code, copy=False).tobytes()
            arrays[name] = {"dtype": code, "shape": [int(s) for s in a.shape], "offset": offset, "nbytes": len(raw)}
            chunks.append(raw + b"\0" * _pad(len(raw)))
            offset += len(raw) + _pad(len(raw))
        ops_json.append({"type": op.type, "attrs": op.attrs, "arrays": arrays})
    header = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "meta": net.meta, "ops": ops_json},
                        sort_keys=True, separators=(",", ":")).encode("utf-8")
    head_len = _FIXED.size + len(header)
    payload_start = head_len + _pad(head_len)
    total = payload_start + offset + _DIGEST
    body = b"".join([_FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(header), total), header, b"\0" * _pad(head_len),
                     *chunks])
    assert len(body) == total - _DIGEST
    return body + hashlib.sha256(body).digest()


def save(net: DeployedNet, path: str | os.PathLike) -> Path:
    """Write ``net`` to ``path`` atomically (temporary file + rename)."""
    data = to_bytes(net)
    return atomic_write(path, lambda f: f.write(data))


def from_bytes(data: bytes, name: str = "<bytes>") -> DeployedNet:
    """Parse and validate the bytes of a deploy file (see the module docstring for the checks)."""
    def fail(msg: str) -> DeployFormatError:
        return DeployFormatError(f"{name}: {msg}")

    if len(data) < len(MAGIC) and MAGIC.startswith(bytes(data)):
        raise fail(f"truncated file ({len(data)} bytes)")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise fail("not an stbin deploy file (bad magic)")
    if len(data) < _FIXED.size + _DIGEST:
        raise fail(f"truncated file ({len(data)} bytes is shorter than the fixed header)")
    magic, version, _reserved, header_len, total = _FIXED.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise fail(f"format version {version} is not supported (this stbin reads version {FORMAT_VERSION})")
    if len(data) < total:
        raise fail(f"truncated file: {len(data)} bytes, the header says {total}")
    if len(data) > total:
        raise fail(f"{len(data) - total} unexpected bytes after the end of the file (the header says {total})")
    body, digest = data[: total - _DIGEST], data[total - _DIGEST: total]
    if hashlib.sha256(body).digest() != digest:
        raise fail("checksum mismatch: the file is corrupted (SHA-256 differs)")
    head_end = _FIXED.size + header_len
    if head_end > len(body):
        raise fail("header length exceeds the file")
    try:
        header = json.loads(body[_FIXED.size: head_end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"unreadable header ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise fail("header is not a version-1 stbin-deploy header")
    payload = memoryview(body)[head_end + _pad(head_end):]
    if not isinstance(header.get("ops"), list) or not header["ops"]:
        raise fail("the header lists no ops")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise fail(f"meta must be a JSON object, got {type(meta).__name__}")
    shape = meta.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(_is_int(v) and 1 <= v <= MAX_DIM
                                                                            for v in shape)):
        raise fail(f"bad input_shape {shape!r} in the header (expected a list of positive integers)")
    ops = [_parse_op(k, o, payload, fail) for k, o in enumerate(header["ops"])]
    try:
        return DeployedNet(ops, meta)
    except ValueError as e:  # the op checks and the shape inference of the whole graph
        raise fail(str(e)) from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_op(k: int, o: Any, payload: memoryview, fail: Any) -> Op:
    """One op of the header, its arrays read from ``payload`` (every field checked before use)."""
    if not isinstance(o, dict) or not isinstance(o.get("type"), str) or o["type"] not in OPS:
        raise fail(f"op {k}: unknown op type {o.get('type') if isinstance(o, dict) else o!r}")
    t = o["type"]
    attrs = o.get("attrs", {})
    specs = o.get("arrays", {})
    if not isinstance(attrs, dict) or not isinstance(specs, dict):
        raise fail(f"op {k} ({t}): attrs and arrays must be JSON objects")
    arrays = {}
    for aname, spec in specs.items():
        where = f"op {k} ({t}): array {aname!r}"
        if not isinstance(spec, dict) or spec.get("dtype") not in _DTYPES or not isinstance(spec.get("shape"), list):
            raise fail(f"{where}: bad description (needs dtype <u8, <f4 or <i4, shape, offset, nbytes)")
        shape, off, nb = spec["shape"], spec.get("offset"), spec.get("nbytes")
        if not all(_is_int(v) and 0 <= v <= MAX_DIM for v in shape) or len(shape) > 8:
            raise fail(f"{where}: shape {shape!r} must be at most 8 integers in [0, {MAX_DIM}]")
        if not (_is_int(off) and _is_int(nb) and off >= 0 and nb >= 0):
            raise fail(f"{where}: offset {off!r} and nbytes {nb!r} must be non-negative integers")
        dt = np.dtype(spec["dtype"])
        if nb != math.prod(shape) * dt.itemsize:
            raise fail(f"{where} has shape {tuple(shape)} but {nb} bytes")
        if off + nb > len(payload):
            raise fail(f"{where} lies outside the payload")
        arrays[aname] = np.frombuffer(payload[off: off + nb], dtype=dt).astype(_DTYPES[spec["dtype"]]).reshape(shape)
    return Op(t, dict(attrs), arrays)


def load(path: str | os.PathLike) -> DeployedNet:
    """Read and validate a deploy file; a bad file raises :class:`DeployFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no deploy file at {path}")
    return from_bytes(path.read_bytes(), str(path))


def describe(net: DeployedNet) -> list[dict[str, Any]]:
    """One row per op: type, array shapes and bytes (for listings)."""
    return [{"type": op.type, "arrays": {k: list(v.shape) for k, v in op.arrays.items()}, "bytes": op.nbytes()}
            for op in net.ops]
