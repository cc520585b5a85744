"""A plugin package written into tmp_path (models and datasets defined outside stbin)."""

from __future__ import annotations

import sys
import textwrap

import pytest

PLUGIN_SOURCE = textwrap.dedent('''
    """Models and datasets defined outside stbin, for the plugin tests."""
    import math

    import torch
    from torch import nn
    from torch.utils.data import Dataset

    SEEN = {"deterministic": []}


    class Blobs(Dataset):
        """3 Gaussian blobs of 1x4x4 images (float, already normalised)."""

        def __init__(self, n, seed, dtype=torch.float32):
            g = torch.Generator().manual_seed(seed)
            self.y = torch.randint(0, 3, (n,), generator=g)
            protos = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2
            self.x = (protos[self.y] + 0.5 * torch.randn(n, 1, 4, 4, generator=g)).to(dtype)

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], int(self.y[i])


    def data(root=None, n_train=96, n_test=48):
        return Blobs(n_train, 1), Blobs(n_test, 2), 3


    class Recorder(nn.Module):
        def forward(self, x):
            SEEN["deterministic"].append(torch.are_deterministic_algorithms_enabled())
            return x


    def model(input_shape, num_classes, hidden=16):
        """A binary MLP made from stbin's layers (so that it exports)."""
        from stbin.models import build_model
        return build_model("mlp", in_features=math.prod(input_shape), num_classes=num_classes,
                           hidden=[hidden, hidden], activation="sign", weights="sign")


    def recording(input_shape, num_classes):
        return nn.Sequential(Recorder(), Zoo.small(input_shape, num_classes))


    class Zoo:
        @staticmethod
        def small(input_shape, num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


    def not_a_module(input_shape, num_classes):
        return "a string"


    def model_raises(input_shape, num_classes):
        raise RuntimeError("out of coffee")


    def data_not_tuple(root=None):
        return [Blobs(8, 1), Blobs(8, 2), 3]


    def data_not_dataset(root=None):
        return [1, 2, 3], Blobs(8, 2), 3


    def data_bad_classes(root=None):
        return Blobs(8, 1), Blobs(8, 2), "three"


    class IntImages(Blobs):
        def __getitem__(self, i):
            return (self.x[i] * 10).long(), int(self.y[i])


    def data_int_images(root=None):
        return IntImages(8, 1), Blobs(8, 2), 3


    class BadLabel(Blobs):
        def __getitem__(self, i):
            return self.x[i], 7 if i == 5 else int(self.y[i])


    def data_bad_label_later(root=None):
        return BadLabel(64, 1), Blobs(8, 2), 3


    class NumpyStyle(Blobs):
        """float64 images and numpy integer labels: accepted (cast to float32 / int)."""

        def __getitem__(self, i):
            import numpy as np
            return self.x[i].double(), np.int64(self.y[i])


    def data_numpy(root=None):
        return NumpyStyle(64, 1), NumpyStyle(32, 2), 3


    def data_raises(root=None):
        raise FileNotFoundError("no such folder /nowhere")


    NOT_CALLABLE = 3

    from subprocess import run as run_command  # a standard-library function re-exported here


    def untyped(**kwargs):
        """Not a model factory: it declares neither input_shape nor num_classes."""
        SEEN["untyped"] = kwargs
        return nn.Linear(1, 1)


    def data_untyped(**kwargs):
        SEEN["data_untyped"] = kwargs
        return Blobs(8, 1), Blobs(8, 2), 3
''')

BROKEN_SOURCE = 'raise ImportError("this module needs a package that is not installed")\n'


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder holding the modules ``stbin_test_plugins`` and ``stbin_test_broken``, on sys.path."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "stbin_test_plugins.py").write_text(PLUGIN_SOURCE)
    (folder / "stbin_test_broken.py").write_text(BROKEN_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    for m in ("stbin_test_plugins", "stbin_test_broken"):
        sys.modules.pop(m, None)
    yield folder
    for m in ("stbin_test_plugins", "stbin_test_broken"):
        sys.modules.pop(m, None)
