"""A restricted unpickler that admits only NumPy array reconstruction.

Pickles can run arbitrary code on load; data files are loaded with
:func:`load_numpy_pickle`, which refuses every global except the few that rebuild NumPy
arrays and dtypes (under both the NumPy 1 and NumPy 2 module names).
"""

from __future__ import annotations

import gzip
import io
import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # protocol-2 pickles written by Python 3 rebuild bytes objects with codecs.encode
    ("_codecs", "encode"): codecs.encode,
}
try:  # NumPy >= 2
    from numpy._core import multiarray as _ma
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _ma  # type: ignore[no-redef]
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _ma._reconstruct
    _ALLOWED[(_mod, "scalar")] = _ma.scalar


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array/dtype reconstruction globals.

    >>> import io, pickle
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(print))).load()
    Traceback (most recent call last):
        ...
    _pickle.UnpicklingError: refusing to load builtins.print from a data pickle (only NumPy arrays are allowed)
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a data pickle (only NumPy arrays are allowed)") from None


class DataFileError(ValueError, pickle.UnpicklingError):
    """A data file that is not what it should be: garbage, truncated, or a pickle refusing to load."""


def load_numpy_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Load a (optionally gzipped) pickle holding NumPy arrays, tuples, lists and dicts only.

    Anything else — a pickle that would import other code, a truncated or garbage file —
    raises :class:`DataFileError` naming the file (never a traceback from deep in pickle).

    Args:
        path: the file (gzip detected by its magic bytes).
        encoding: how Python 2 strings are decoded (``"latin1"``; ``"bytes"`` keeps them bytes).

    >>> import os, pickle, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "batch.pkl")
    >>> with open(path, "wb") as f:
    ...     pickle.dump({"data": np.arange(3, dtype=np.uint8)}, f)
    >>> load_numpy_pickle(path)
    {'data': array([0, 1, 2], dtype=uint8)}
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return RestrictedUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise DataFileError(f"{path}: {e}" if "refusing" in str(e) else
                            f"{path} is not a readable data pickle (corrupted or foreign file): {e}") from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OSError, MemoryError,
            RecursionError, UnicodeDecodeError, OverflowError) as e:  # what a damaged pickle stream raises
        raise DataFileError(f"{path} is not a readable data pickle (corrupted, truncated or foreign file): "
                            f"{type(e).__name__}: {str(e)[:120]}") from None
