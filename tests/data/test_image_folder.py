"""``image_folder``: class-subfolder PNG/JPEG datasets streamed from disk, with augmentation,
computed or given normalisation, and unreadable files reported by name or skipped and counted."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL.Image")

import stbin  # noqa: E402
from stbin.cli.main import main  # noqa: E402
from stbin.data.image_folder import ImageFolder, open_image_folder  # noqa: E402

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def make_folder(root, n_train=12, n_val=6, size=(10, 12), seed=0, held="val", jpeg_every=4):
    """Noisy solid-colour images (H x W = size), one class per colour; every 4th file a JPEG."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), (held, n_val)):
        for name, rgb in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                a = np.clip(np.array(rgb) + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
                ext = "jpg" if jpeg_every and i % jpeg_every == 0 else "png"
                PIL.fromarray(a).save(d / f"{i:03d}.{ext}")
    return root


def cfg(root, out, **options):
    return {"preset": "tiny", "device": "cpu", "out_dir": str(out),
            "data": {"name": "image_folder", "root": str(root), "options": options},
            "model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 2, "batch_size": 8},
            "eval": {"ensemble": 0}}


def test_trains_from_an_image_folder_with_augmentation(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs")
    r = stbin.train(cfg(root, tmp_path / "run", image_size=8, augment="crop", padding=2, hflip=True), log=None)
    assert r.metrics["epoch"] == 2 and "test_accuracy" in r.metrics  # val/ is the held-out split
    assert r.model[1].in_features == 3 * 8 * 8
    assert r.test["mode"] > 50  # three well separated colours
    assert main(["summary", "--checkpoint", str(r.checkpoint)]) == 0  # the recorded input shape
    assert "on 3x8x8 inputs" in capsys.readouterr().out
    # streaming is reproducible: a fresh run replays the same augmented batches
    again = stbin.train(cfg(root, tmp_path / "run2", image_size=8, augment="crop", padding=2, hflip=True), log=None)
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_split_layout_classes_and_sizes(tmp_path):
    root = make_folder(tmp_path / "imgs", held="test")
    train, test, k = open_image_folder(str(root), image_size=[6, 5])
    assert k == 3 and train.classes == sorted(COLOURS) and len(train) == 36 and len(test) == 18
    x, y = train[0]
    assert x.shape == (3, 6, 5) and x.dtype == torch.float32 and y == 0
    assert sorted(set(int(v) for v in test.labels)) == [0, 1, 2]
    g_train, g_test, _ = open_image_folder(str(root), channels=1)
    assert g_train[0][0].shape == (1, 10, 12)  # default size: the first training image's


def test_computed_normalisation_is_the_pixel_mean_and_std(tmp_path):
    root = make_folder(tmp_path / "imgs", jpeg_every=0)
    train, _, _ = open_image_folder(str(root), norm_samples=10_000)
    pixels = np.concatenate([np.asarray(PIL.open(p.decode()).convert("RGB"), dtype=np.float64).reshape(-1, 3)
                             for p in train.paths]) / 255.0
    assert torch.allclose(train.mean.flatten().double(), torch.from_numpy(pixels.mean(0)), atol=1e-6)
    assert torch.allclose(train.std.flatten().double(), torch.from_numpy(pixels.std(0)), atol=1e-6)
    xs = torch.stack([train[i][0] for i in range(len(train))])
    assert torch.allclose(xs.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    given, _, _ = open_image_folder(str(root), mean=[0.5, 0.5, 0.5], std=0.25)
    a = np.asarray(PIL.open(given.paths[0].decode()).convert("RGB"), dtype=np.float32) / 255.0
    assert torch.allclose(given[0][0], (torch.from_numpy(a).permute(2, 0, 1) - 0.5) / 0.25, atol=1e-6)


@pytest.mark.parametrize("augment", ["crop", "resized_crop"])
def test_augmentation_is_seeded_by_seed_epoch_and_index(tmp_path, augment):
    root = make_folder(tmp_path / "imgs", n_train=4, n_val=2, size=(16, 16))
    train, test, _ = open_image_folder(str(root), image_size=12, augment=augment, hflip=True, mean=0.5, std=0.5)
    a = train[3][0]
    assert a.shape == (3, 12, 12) and torch.equal(a, train[3][0])
    train.set_epoch(1)
    assert not torch.equal(a, train[3][0])
    train.set_epoch(0)
    assert torch.equal(a, train[3][0])
    assert torch.equal(test[1][0], test[1][0]) and test[1][0].shape == (3, 12, 12)


def test_crop_with_padding_is_a_shifted_window(tmp_path):
    """A padded random crop holds the resized image shifted by at most ``padding`` pixels, zeros outside."""
    root = make_folder(tmp_path / "imgs", n_train=2, n_val=1, size=(8, 8), jpeg_every=0)
    plain = ImageFolder(root / "train", mean=[0.0] * 3, std=[1.0] * 3)
    crop = ImageFolder(root / "train", augment="crop", padding=2, mean=[0.0] * 3, std=[1.0] * 3, seed=5)
    for i in range(len(plain)):
        x, c = plain[i][0], crop[i][0]
        xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
        assert any(torch.equal(c, xp[:, t:t + 8, s:s + 8]) for t in range(5) for s in range(5)), i


def test_corrupt_file_is_named_or_skipped_and_counted(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs")
    bad = root / "train" / "red" / "005.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code = main(["train", "--config", _toml(tmp_path, root, tmp_path / "a", {}), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(bad) in err and "skip_corrupt" in err, err
    r = stbin.train(cfg(root, tmp_path / "b", skip_corrupt=True), log=None)
    assert r.metrics["skipped_images"] == 1


def _toml(tmp_path, root, out, options):
    p = tmp_path / "c.toml"
    p.write_text(f'preset = "tiny"\ndevice = "cpu"\nout_dir = "{out}"\n[data]\nname = "image_folder"\n'
                 f'root = "{root}"\n[model]\nname = "mlp"\nhidden = [16]\n[train]\nepochs = 1\nbatch_size = 8\n'
                 '[eval]\nensemble = 0\n')
    return str(p)


@pytest.mark.parametrize("options,match", [
    ({"augment": "rotate"}, "augment"),
    ({"image_size": 0}, "data.options.image_size must be a positive integer or \\[H, W\\], got 0"),
    ({"image_size": [8]}, "data.options.image_size"),
    ({"channels": 2}, "data.options.channels must be 1 or 3, got 2"),
    ({"std": [1, 0, 1]}, "data.options.std must be 3 finite numbers > 0"),
    ({"mean": [0.5]}, "data.options.mean must be 3 finite numbers"),
    ({"scale": [0.5, 2]}, "data.options.scale"),
    ({"padding": -1}, "data.options.padding must be an integer >= 0"),
    ({"hflip": "yes"}, "data.options.hflip must be true or false"),
    ({"colour": 1}, "colour"),
])
def test_bad_options_are_refused(tmp_path, options, match):
    root = make_folder(tmp_path / "imgs", n_train=2, n_val=1)
    with pytest.raises(ValueError, match=match):
        stbin.train(cfg(root, tmp_path / "run", **options), log=None)


def test_bad_layouts_are_refused(tmp_path):
    root = make_folder(tmp_path / "imgs", n_train=2, n_val=1)
    (root / "val" / "purple").mkdir()
    with pytest.raises(ValueError, match="class folders that train/ lacks: purple"):
        open_image_folder(str(root))
    (root / "val" / "purple").rmdir()
    import shutil
    shutil.rmtree(root / "val")
    with pytest.raises(FileNotFoundError, match="no val/ or test/ folder"):
        open_image_folder(str(root))
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        open_image_folder(str(tmp_path))
    with pytest.raises(ValueError, match="data.root must be the image folder"):
        open_image_folder(None)


def test_missing_pillow_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    root = make_folder(tmp_path / "imgs", n_train=2, n_val=1)
    monkeypatch.setitem(sys.modules, "PIL", None)
    # --no-plots: matplotlib itself needs Pillow (without it, the missing matplotlib would be reported)
    code = main(["train", "--config", _toml(tmp_path, root, tmp_path / "a", {}), "--no-progress", "--no-plots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pip install 'stbin[images]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a" / "checkpoint-epoch0001.pt").exists()
