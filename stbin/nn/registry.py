r"""The registry of binary / quantized module types and their declared precision.

Every binary or quantized module of :mod:`stbin.nn` — activations (:class:`StochasticSign`,
:class:`Sign`, :class:`Heaviside`, :class:`QuantReLU`) and weight layers
(:class:`BinaryLinear`, :class:`BinaryConv2d`) — is registered in :data:`BINARY_MODULES`
by the decorator :func:`register_binary_module` in its own file. An entry carries what the
rest of the library needs, so that nothing else keeps a list of class names:

* ``options`` — the constructor options (name -> default) that configure the
  quantization (what a model config or :func:`stbin.nn.binarize` may set);
* ``precision(**options)`` — the declared :class:`Precision` (weight bits, input bits,
  output bits), as Larq's quantizers declare a ``precision`` that ``larq.models.summary``
  reads; every module instance exposes the same as its ``precision`` property;
* for weight layers, ``replaces`` (the float module types it stands in for) and
  ``from_float(module, **options)`` (the conversion :func:`stbin.nn.binarize` calls).

Model summaries, the deploy compiler, parameter splitting and evaluation modes recognise
binary modules through :class:`BinaryModule` (any registered type) and its ``precision``
and ``stochastic`` properties, never through class names. Adding a module type is one file
(the class, decorated) plus its test; see docs/extending.md.

>>> from stbin.nn import BINARY_MODULES
>>> BINARY_MODULES.get("quant_relu").precision(bits=3)
Precision(weight_bits=None, input_bits=None, output_bits=3, output_signed=False)
>>> "binary_linear" in BINARY_MODULES.names(kind="weight_layer")
True
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from torch import nn

from stbin._registry import Registry, check_choice, unknown_name_message

KINDS = ("activation", "weight_layer")


@dataclass(frozen=True)
class Precision:
    """Declared precision of a module.

    Args:
        weight_bits: bits per deployed weight (``None``: the module has no weights).
        input_bits: bits of the values the module itself quantizes its input to before
            using it (``None``: it uses its input as given, e.g. real-valued).
        output_bits: bits of the output values (``None``: real-valued, 32-bit float).
        output_signed: whether 1-bit outputs are ±1 (``True``) or 0/1 (``False``).
    """

    weight_bits: int | None = None
    input_bits: int | None = None
    output_bits: int | None = None
    output_signed: bool = True

    @property
    def is_sign(self) -> bool:
        """Output in {-1, +1}: a module a binary (XNOR-popcount) layer can consume."""
        return self.output_bits == 1 and self.output_signed


class BinaryModule(nn.Module):
    """Base class of every registered binary / quantized module.

    Subclasses set :attr:`OPTIONS` (their quantization constructor options) and implement
    :meth:`precision_for` (a static function of those options); :attr:`precision` and
    :attr:`options` are then derived for every instance.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def precision_for(**options: Any) -> Precision:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def option_declaration(cls) -> Callable[..., Any]:
        """The callable whose signature declares the :attr:`OPTIONS` with their defaults: the
        constructor (a family of modules may declare its shared options once elsewhere)."""
        return cls.__init__

    @property
    def options(self) -> dict[str, Any]:
        """The instance's quantization options (constructor keyword -> value)."""
        return {k: getattr(self, k) for k in self.OPTIONS}

    @property
    def precision(self) -> Precision:
        """The declared precision of this instance (see :class:`Precision`)."""
        return self.precision_for(**self.options)

    @property
    def stochastic(self) -> bool:
        """Whether evaluation depends on ``eval_mode`` (mode / mean / sample)."""
        return False

    def mode_module(self) -> nn.Module:
        """A module of standard tensor ops computing this module in ``mode`` (for ONNX export)."""
        raise ValueError(f"{type(self).__name__} has no plain-op equivalent (mode_module) for ONNX export; "
                         f"define mode_module() in it (docs/extending.md)")


@dataclass(frozen=True)
class BinaryModuleType:
    """One registered module type (see the module docstring)."""

    name: str
    cls: type
    kind: str
    options: dict[str, Any]
    replaces: tuple[type, ...] = ()
    from_float: Callable[..., nn.Module] | None = None
    summary: str = field(default="", compare=False)

    def precision(self, **options: Any) -> Precision:
        """The precision a module built with ``options`` (others at their defaults) declares."""
        self.check_options(options)
        return self.cls.precision_for(**{**self.options, **options})  # type: ignore[attr-defined]

    def check_options(self, options: dict[str, Any]) -> None:
        """ValueError naming the nearest valid option for an unknown key."""
        for k in options:
            if k not in self.options:
                raise ValueError(unknown_name_message(f"option of {self.name}", k, sorted(self.options)))

    def build(self, *args: Any, **options: Any) -> nn.Module:
        """A new module (``args``: the shape arguments of a weight layer)."""
        self.check_options(options)
        return self.cls(*args, **options)


class _ModuleRegistry(Registry[BinaryModuleType]):
    def names(self, kind: str | None = None) -> list[str]:  # type: ignore[override]
        if kind is not None:
            check_choice("module kind", kind, KINDS)
        return sorted(n for n, e in self._items.items() if kind is None or e.kind == kind)

    def entries(self, kind: str | None = None) -> Iterator[BinaryModuleType]:
        return (self.get(n) for n in self.names(kind))

    def for_float(self, module: nn.Module) -> BinaryModuleType | None:
        """The weight-layer entry that replaces ``module``'s exact type, or None."""
        for e in self.entries("weight_layer"):
            if type(module) in e.replaces:
                return e
        return None


BINARY_MODULES = _ModuleRegistry("binary module type")


def _declared_options(cls: type, names: tuple[str, ...]) -> dict[str, Any]:
    sig = inspect.signature(cls.option_declaration())  # type: ignore[attr-defined]
    out = {}
    for n in names:
        p = sig.parameters.get(n)
        if p is None or p.default is inspect.Parameter.empty:
            raise TypeError(f"{cls.__name__}.OPTIONS names {n!r}, which is not a keyword with a default of "
                            f"{cls.__name__}.option_declaration()")
        out[n] = p.default
    return out


def register_binary_module(name: str, kind: str, replaces: tuple[type, ...] = (),
                           from_float: Callable[..., nn.Module] | None = None) -> Callable[[type], type]:
    """Class decorator registering a :class:`BinaryModule` subclass in :data:`BINARY_MODULES`.

    Args:
        name: registry name (used by model configs and :func:`stbin.nn.binarize`).
        kind: ``"activation"`` or ``"weight_layer"``.
        replaces: float module types a weight layer stands in for (e.g. ``(nn.Linear,)``).
        from_float: ``from_float(float_module, **options) -> module`` for weight layers.
    """
    check_choice("module kind", kind, KINDS)

    def add(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, BinaryModule)):
            raise TypeError(f"{name}: only BinaryModule subclasses can be registered")
        if kind == "weight_layer" and (not replaces or from_float is None):
            raise TypeError(f"{name}: a weight layer declares the float types it replaces and from_float")
        doc = (cls.__doc__ or "").strip().splitlines()
        old = BINARY_MODULES._items.get(name)
        if old is not None and (old.cls.__module__, old.cls.__qualname__) == (cls.__module__, cls.__qualname__):
            del BINARY_MODULES._items[name]  # the same class, its module imported again (reload, doctest)
        BINARY_MODULES.register(name, BinaryModuleType(name, cls, kind, _declared_options(cls, cls.OPTIONS),
                                                       tuple(replaces), from_float, doc[0] if doc else ""))
        return cls

    return add


def precision_of(module: nn.Module) -> Precision | None:
    """The declared precision of a registered module, ``None`` for anything else (real-valued)."""
    return module.precision if isinstance(module, BinaryModule) else None
