"""Models and datasets from user code, named by import path: ``"package.module:factory"``.

A name with a colon in ``model.name`` or ``data.name`` (or ``--model`` / ``--dataset``) is
an import path instead of a registered name. The module is imported (it must be importable:
installed, or its folder on ``PYTHONPATH``), the attribute after the colon (dots allowed:
``pkg.mod:Zoo.small``) is looked up and called.

Contracts (checked; any breach is one :class:`PluginError` naming the plugin):

* **model factory**: ``factory(input_shape=(C, H, W), num_classes=K, **model_options)``
  returns a ``torch.nn.Module`` (``model_options``: the ``[model]`` table without ``name``);
* **dataset factory**: ``factory(root=data.root, **data.options)`` returns
  ``(train, test, num_classes)``: two ``torch.utils.data.Dataset`` objects with a length,
  whose items are ``(image, label)`` with ``image`` a floating-point tensor ``C x H x W``
  (already normalised) and ``label`` an int in ``[0, num_classes)``.

The checkpoint of a run stores the import path and the arguments, so that resuming,
``stbin summary --checkpoint`` and ``stbin export`` rebuild the model through the same
factory; when the module cannot be imported they say what to make importable.

Only functions made for the purpose are called (:func:`check_factory`): a model factory must
declare ``input_shape`` and ``num_classes`` as named parameters, a dataset factory ``root``, and
neither may come from Python's standard library. A checkpoint or config file names the
factory *and* its arguments, so without this a crafted file could make ``stbin summary
--checkpoint`` call any importable function (``subprocess:run`` with ``shell=True``).

>>> is_plugin("mlp"), is_plugin("mypkg.models:tiny")
(False, True)
>>> load_factory("model", "math:floor")(2.5)
2
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import re
import sys
from typing import Any, Callable

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_HINT = "make it importable: install it, or add the folder that holds it to PYTHONPATH"


class PluginError(ValueError):
    """A plugin that cannot be imported, lacks its factory, raises, or breaks its contract."""


def is_plugin(name: object) -> bool:
    """True for an import path ``"module:factory"`` (registered names have no colon)."""
    return isinstance(name, str) and ":" in name


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_factory(kind: str, path: str) -> Callable[..., Any]:
    """Import ``module`` and return its attribute ``factory`` of ``"module:factory"``.

    ``kind`` ("model", "dataset") is used in the messages.
    """
    if not isinstance(path, str) or not _PATH.match(path):
        raise PluginError(f"{kind} plugin {path!r} is not an import path of the form 'package.module:factory'")
    mod_name, attr = path.split(":")
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        missing = e.name or mod_name
        if mod_name == missing or mod_name.startswith(missing + "."):
            raise PluginError(f"{kind} plugin {path!r}: cannot import module {mod_name!r} (no module named "
                              f"{missing!r}); {_HINT}") from None
        raise PluginError(f"{kind} plugin {path!r}: importing {mod_name!r} failed: {_first_line(e)}") from None
    except Exception as e:  # the user's module raised while being imported
        raise PluginError(f"{kind} plugin {path!r}: importing {mod_name!r} failed: {_first_line(e)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{kind} plugin {path!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PluginError(f"{kind} plugin {path!r}: {attr!r} is a {type(obj).__name__}, not a callable factory")
    return obj


#: the parameters a factory of each kind must declare by name (its contract, see the module docstring)
DECLARED_PARAMETERS = {"model": ("input_shape", "num_classes"), "dataset": ("root",)}


def _not_standard_library(kind: str, path: str, module: str) -> None:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise PluginError(f"{kind} plugin {path!r}: module {module!r} is part of Python's standard library, "
                          f"not a {kind} factory")


def check_factory(kind: str, path: str, factory: Callable[..., Any]) -> None:
    """:class:`PluginError` unless ``factory`` is a ``kind`` factory: it declares the parameters of
    :data:`DECLARED_PARAMETERS` by name and neither ``path``'s module nor the factory's own comes
    from Python's standard library. Checked before the factory is called, so that a file naming
    ``"subprocess:run"`` (with ``shell=True`` among its "options") never runs it.

    >>> check_factory("model", "subprocess:run", __import__("subprocess").run)
    Traceback (most recent call last):
    ...
    stbin.plugins.PluginError: model plugin 'subprocess:run': module 'subprocess' is part of Python's standard library, not a model factory
    """
    _not_standard_library(kind, path, path.split(":")[0])
    _not_standard_library(kind, path, getattr(factory, "__module__", None) or "")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise PluginError(f"{kind} plugin {path!r}: its signature cannot be read, so it cannot be checked to be "
                          f"a {kind} factory") from None
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [n for n in DECLARED_PARAMETERS[kind] if n not in named]
    if missing:
        want = ", ".join(DECLARED_PARAMETERS[kind])
        raise PluginError(f"{kind} plugin {path!r} does not declare the parameter(s) {', '.join(missing)} of a "
                          f"{kind} factory: define it as factory({want}, **options)")


def call_factory(kind: str, path: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
    """Call ``factory(**kwargs)``; any exception becomes one :class:`PluginError` line naming the plugin."""
    try:
        return factory(**kwargs)
    except Exception as e:
        raise PluginError(f"{kind} plugin {path!r} raised {_first_line(e)}") from None


def build_model_plugin(path: str, **kwargs: Any) -> Any:
    """``factory(input_shape=(C, H, W), num_classes=K, **options)``, checked to return an ``nn.Module``."""
    from torch import nn

    if "input_shape" in kwargs:
        kwargs["input_shape"] = tuple(int(s) for s in kwargs["input_shape"])
    if isinstance(path, str) and _PATH.match(path):  # no standard-library module is even imported
        _not_standard_library("model", path, path.split(":")[0])
    factory = load_factory("model", path)
    check_factory("model", path, factory)
    model = call_factory("model", path, factory, **kwargs)
    if not isinstance(model, nn.Module):
        raise PluginError(f"model plugin {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_dataset_plugin(path: str, root: str | None, **options: Any) -> tuple[Any, Any, int]:
    """``factory(root=..., **options)`` -> ``(train, test, num_classes)``, checked (first item of each split)."""
    from torch.utils.data import Dataset

    if isinstance(path, str) and _PATH.match(path):  # no standard-library module is even imported
        _not_standard_library("dataset", path, path.split(":")[0])
    factory = load_factory("dataset", path)
    check_factory("dataset", path, factory)
    out = call_factory("dataset", path, factory, root=root, **options)
    if not isinstance(out, tuple) or len(out) != 3:
        raise PluginError(f"dataset plugin {path!r} returned {type(out).__name__}; expected a tuple "
                          "(train, test, num_classes)")
    train, test, k = out
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise PluginError(f"dataset plugin {path!r}: num_classes must be an integer >= 2, got {k!r}")
    shape = None
    for split, ds in (("train", train), ("test", test)):
        if not isinstance(ds, Dataset):
            raise PluginError(f"dataset plugin {path!r}: the {split} split is a {type(ds).__name__}, "
                              "not a torch.utils.data.Dataset")
        try:
            n = len(ds)
        except TypeError:
            raise PluginError(f"dataset plugin {path!r}: the {split} split has no length") from None
        if n < 1:
            raise PluginError(f"dataset plugin {path!r}: the {split} split is empty")
        try:
            item = ds[0]
        except Exception as e:
            raise PluginError(f"dataset plugin {path!r}: reading {split}[0] raised {_first_line(e)}") from None
        s = check_item(item, k, f"dataset plugin {path!r}: {split}[0]")
        if shape is not None and s != shape:
            raise PluginError(f"dataset plugin {path!r}: test images are {tuple(s)}, train images {tuple(shape)}")
        shape = s
    return train, test, k


def check_item(item: Any, num_classes: int, where: str, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Check one ``(image, label)`` item against the dataset contract; returns the image shape."""
    import torch

    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise PluginError(f"{where} is a {type(item).__name__}; expected (image tensor C x H x W, int label)")
    x, y = item
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
        what = f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise PluginError(f"{where}: the image is {what}; expected a floating-point tensor C x H x W")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise PluginError(f"{where}: the image has shape {tuple(x.shape)}, the others {tuple(shape)}")
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point() and y.dtype != torch.bool:
        y = int(y)
    elif isinstance(y, numbers.Integral) and not isinstance(y, bool):  # numpy integers too
        y = int(y)
    if not isinstance(y, int) or isinstance(y, bool) or not 0 <= y < num_classes:
        raise PluginError(f"{where}: the label is {y!r}; expected an int in [0, {num_classes})")
    return tuple(x.shape)


__all__ = ["PluginError", "DECLARED_PARAMETERS", "is_plugin", "load_factory", "check_factory", "call_factory", "build_model_plugin",
           "load_dataset_plugin", "check_item"]
