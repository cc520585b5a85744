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
every op's arrays and shapes, and raises :class:`DeployFormatError` (a ValueError) with a
clear message on the first failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from stbin._io import atomic_write
from stbin.deploy.engine import OP_TYPES, DeployedNet, Op
from stbin.deploy.packing import n_words

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
    ops = []
    if not isinstance(header.get("ops"), list) or not header["ops"]:
        raise fail("the header lists no ops")
    for k, o in enumerate(header["ops"]):
        if not isinstance(o, dict) or o.get("type") not in OP_TYPES:
            raise fail(f"op {k}: unknown op type {o.get('type') if isinstance(o, dict) else o!r}")
        arrays = {}
        for aname, spec in (o.get("arrays") or {}).items():
            try:
                dt = _DTYPES[spec["dtype"]]
                shape = tuple(int(s) for s in spec["shape"])
                off, nb = int(spec["offset"]), int(spec["nbytes"])
            except (KeyError, TypeError, ValueError):
                raise fail(f"op {k} ({o['type']}): bad description of array {aname!r}") from None
            if min(shape, default=0) < 0 or off < 0 or nb != int(np.prod(shape)) * np.dtype(dt).itemsize:
                raise fail(f"op {k} ({o['type']}): array {aname!r} has shape {shape} but {nb} bytes")
            if off + nb > len(payload):
                raise fail(f"op {k} ({o['type']}): array {aname!r} lies outside the payload")
            arr = np.frombuffer(payload[off: off + nb], dtype=spec["dtype"]).astype(dt).reshape(shape)
            arrays[aname] = arr
        ops.append(Op(o["type"], dict(o.get("attrs") or {}), arrays))
    for k, op in enumerate(ops):
        try:
            validate_op(op)
        except ValueError as e:
            raise fail(f"op {k} ({op.type}): {e}") from None
    try:
        validate_graph(ops)
    except ValueError as e:
        raise fail(str(e)) from None
    meta = header.get("meta") or {}
    shape = meta.get("input_shape") if isinstance(meta, dict) else None
    if shape is not None and not (isinstance(shape, list) and shape and all(isinstance(v, int) and v >= 1
                                                                            for v in shape)):
        raise fail(f"bad input_shape {shape!r} in the header")
    return DeployedNet(ops, meta if isinstance(meta, dict) else {})


def load(path: str | os.PathLike) -> DeployedNet:
    """Read and validate a deploy file; a bad file raises :class:`DeployFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no deploy file at {path}")
    return from_bytes(path.read_bytes(), str(path))


def _need(op: Op, name: str, dtype: type, ndim: int) -> np.ndarray:
    a = op.arrays.get(name)
    if a is None:
        raise ValueError(f"missing array {name!r}")
    if a.dtype != dtype or a.ndim != ndim:
        raise ValueError(f"array {name!r} must be {np.dtype(dtype).name} with {ndim} axes, got {a.dtype} {a.shape}")
    return a


def _vec(op: Op, name: str, dtype: type, n: int, required: bool = True) -> None:
    if name not in op.arrays and not required:
        return
    a = _need(op, name, dtype, 1)
    if a.shape[0] != n:
        raise ValueError(f"array {name!r} has {a.shape[0]} entries, expected {n}")


def _int_attr(op: Op, name: str) -> int:
    v = op.attrs.get(name)
    if not isinstance(v, int) or v < 1:
        raise ValueError(f"attribute {name!r} must be a positive integer, got {v!r}")
    return v


def _pair_attr(op: Op, name: str, minimum: int) -> None:
    v = op.attrs.get(name)
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= minimum for x in v)):
        raise ValueError(f"attribute {name!r} must be two integers >= {minimum}, got {v!r}")


def validate_op(op: Op) -> None:  # noqa: C901 - one branch per op type
    """Check that an op's arrays and attributes are consistent (ValueError if not)."""
    t = op.type
    allowed: set[str] = set()
    if t == "linear":
        w = _need(op, "weight", np.float32, 2)
        _vec(op, "bias", np.float32, w.shape[0], required=False)
        allowed = {"weight", "bias"}
    elif t == "conv2d":
        w = _need(op, "weight", np.float32, 4)
        _vec(op, "bias", np.float32, w.shape[0], required=False)
        for a, mn in (("stride", 1), ("padding", 0), ("dilation", 1)):
            _pair_attr(op, a, mn)
        allowed = {"weight", "bias"}
    elif t == "bits_float":
        _int_attr(op, "features")
    elif t in ("sign", "sign2d"):
        s = _need(op, "S", np.float32, 1)
        _vec(op, "T", np.float32, s.shape[0])
        allowed = {"S", "T"}
    elif t == "affine":
        a = _need(op, "alpha", np.float32, 1)
        _vec(op, "beta", np.float32, a.shape[0])
        allowed = {"alpha", "beta"}
    elif t in ("bdense", "bdense_f", "blinear"):
        k, m = _int_attr(op, "in_features"), _int_attr(op, "out_features")
        w = _need(op, "weight", np.uint64, 2)
        if w.shape[0] != m or w.shape[1] < n_words(k):
            raise ValueError(f"packed weight shape {w.shape} does not fit {k} -> {m}")
        allowed = {"weight"}
    elif t in ("bconv2d", "bconv2d_f"):
        c, m = _int_attr(op, "in_channels"), _int_attr(op, "out_channels")
        w = _need(op, "weight", np.uint64, 4)
        if w.shape[0] != m or w.shape[3] != n_words(c):
            raise ValueError(f"packed weight shape {w.shape} does not fit {c} -> {m} channels")
        for a, mn in (("stride", 1), ("padding", 0), ("dilation", 1)):
            _pair_attr(op, a, mn)
        allowed = {"weight"}
    elif t == "maxpool2d":
        for a, mn in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            _pair_attr(op, a, mn)
        if "any_mask" in op.arrays:
            _need(op, "any_mask", np.uint64, 1)
        allowed = {"any_mask"}
    if t in ("bdense", "bconv2d"):
        m = op.arrays["weight"].shape[0]
        _vec(op, "S", np.int32, m)
        _vec(op, "T", np.int32, m)
        if not np.all(np.abs(op.arrays["S"]) == 1):
            raise ValueError("threshold directions S must be +1 or -1")
        allowed |= {"S", "T"}
    if t in ("bdense_f", "bconv2d_f", "blinear"):
        m = op.arrays["weight"].shape[0]
        _vec(op, "scale", np.float32, m, required=False)
        _vec(op, "bias", np.float32, m, required=False)
        allowed |= {"scale", "bias"}
    extra = set(op.arrays) - allowed
    if extra:
        raise ValueError(f"unexpected arrays {sorted(extra)}")


_IN_KIND = {"linear": "float", "blinear": "float", "conv2d": "float", "affine": "float", "sign": "float", "sign2d": "float",
            "bdense": "bits", "bdense_f": "bits", "bconv2d": "bits", "bconv2d_f": "bits", "maxpool2d": "bits",
            "bits_float": "bits", "flatten": None}
_OUT_KIND = {"linear": "float", "blinear": "float", "conv2d": "float", "affine": "float", "sign": "bits", "sign2d": "bits",
             "bdense": "bits", "bdense_f": "float", "bconv2d": "bits", "bconv2d_f": "float", "maxpool2d": "bits",
             "bits_float": "float", "flatten": None}


def validate_graph(ops: list[Op]) -> None:
    """Check that each op gets the kind of tensor (float or bits) it takes and that the graph ends in floats."""
    kind = "float"
    for k, op in enumerate(ops):
        want = _IN_KIND[op.type]
        if want is not None and want != kind:
            raise ValueError(f"op {k} ({op.type}) takes {want} input but gets {kind}")
        kind = _OUT_KIND[op.type] or kind
    if kind != "float":
        raise ValueError("the graph ends in binary units instead of a float output")


def describe(net: DeployedNet) -> list[dict[str, Any]]:
    """One row per op: type, array shapes and bytes (for listings)."""
    return [{"type": op.type, "arrays": {k: list(v.shape) for k, v in op.arrays.items()}, "bytes": op.nbytes()}
            for op in net.ops]
