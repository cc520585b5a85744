"""Dataset registry, CIFAR-10 batches folder, digits, synthetic set, validation split, transforms."""

import pickle

import numpy as np
import pytest
import torch

from stbin.data import DATASETS, load_cifar10, load_dataset, load_synthetic, random_crop, random_hflip, to_float
from stbin.data.transforms import augment


def write_cifar_folder(folder, n_per_batch=6, seed=0):
    """A small cifar-10-batches-py folder in the standard format (protocol-2 pickles, bytes keys)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        obj = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
               b"filenames": [f"img{i}.png".encode() for i in range(n_per_batch)]}
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
        batches[name] = (data, labels)
    return batches


def test_registry_names_and_unknown_name():
    assert {"mnist", "fashion_mnist", "cifar10", "digits", "synthetic"} <= set(DATASETS.names())
    with pytest.raises(ValueError, match="did you mean 'cifar10'"):
        load_dataset("cifar_10")


def test_synthetic_is_deterministic_and_shaped():
    x1, y1 = load_synthetic("train", n_train=40, seed=3)
    x2, y2 = load_synthetic("train", n_train=40, seed=3)
    assert x1.dtype == torch.uint8 and x1.shape == (40, 8, 8) and y1.shape == (40,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = load_synthetic("test", n_test=10, channels=3, image_size=6)
    assert x3.shape == (10, 3, 6, 6)


def test_validation_split_is_disjoint_and_seeded():
    d = load_dataset("synthetic", val_size=100, n_train=400)
    assert d.x_train.shape == (300, 1, 8, 8) and d.x_val.shape == (100, 1, 8, 8)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    full = load_dataset("synthetic", n_train=400)
    rows = {tuple(r.flatten().tolist()) for r in full.x_train}
    assert all(tuple(r.flatten().tolist()) in rows for r in d.x_val)
    d2 = load_dataset("synthetic", val_size=100, n_train=400)
    assert torch.equal(d.x_val, d2.x_val)
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("synthetic", val_size=400, n_train=400)


def test_root_is_refused_for_generated_sets():
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("synthetic", root="/tmp")


def test_cifar10_reads_the_standard_batches_folder(tmp_path):
    batches = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        x, y = load_cifar10("train", root)
        assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (30,)
    data, labels = batches["data_batch_1"]
    assert torch.equal(x[:6], torch.from_numpy(data.reshape(-1, 3, 32, 32)))
    assert y[:6].tolist() == labels
    xt, yt = load_cifar10("test", tmp_path)
    assert xt.shape == (6, 3, 32, 32)
    d = load_dataset("cifar10", root=str(tmp_path))
    assert d.input_shape == (3, 32, 32) and d.augment == {"crop_padding": 4, "hflip": True}


def test_cifar10_missing_gives_instructions(tmp_path):
    for root in (None, tmp_path):
        with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
            load_cifar10("train", root)
    write_cifar_folder(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10("train", tmp_path)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    write_cifar_folder(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_cifar10("test", tmp_path)


def test_digits_if_scikit_learn_is_installed():
    pytest.importorskip("sklearn")
    d = load_dataset("digits")
    assert d.x_train.shape == (1438, 1, 8, 8) and d.x_test.shape == (359, 1, 8, 8)
    assert int(d.x_train.max()) == 255 and set(d.y_train.unique().tolist()) == set(range(10))


def test_to_float_normalises_per_channel():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    y = to_float(x, (0.5, 0.0, 1.0), (0.5, 1.0, 2.0))
    assert torch.allclose(y[:, 0], torch.ones(2, 4, 4)) and torch.allclose(y[:, 1], torch.ones(2, 4, 4))
    assert torch.allclose(y[:, 2], torch.zeros(2, 4, 4))


def test_random_crop_is_a_shifted_window_and_reproducible():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5) + 1
    assert torch.equal(random_crop(x, 0), x)
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 2, g)
    assert y.shape == x.shape
    assert torch.equal(y, random_crop(x, 2, torch.Generator().manual_seed(0)))
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output is some 5x5 window of the padded image
        windows = [xp[i, :, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[i], w) for w in windows)


def test_hflip_and_augment():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(3, 1, 1, 1)
    assert torch.equal(random_hflip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0), x)
    y = augment(x, crop_padding=1, hflip=True, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape


def test_unknown_loader_options():
    with pytest.raises(ValueError, match="did you mean 'n_train'"):
        load_dataset("synthetic", n_trian=3)
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset("mnist", n_train=3)
