r"""Convert any float ``nn.Module`` into a (stochastic) binary network: :func:`binarize`.

The conversion is explicit and inspectable:

* **weight layers** — every module whose exact type a registered weight layer
  ``replaces`` (``nn.Linear`` -> :class:`BinaryLinear`, ``nn.Conv2d`` ->
  :class:`BinaryConv2d`) is rebuilt with all its constructor arguments (stride, padding,
  dilation, groups, bias, padding_mode, device, dtype); its latent weights are initialised
  from the float weights (:mod:`stbin.nn.transfer`) unless ``transfer=False``;
* **policy** — the first and the last weight layer *in execution order* stay real-valued
  (BinaryNet / XNOR-Net practice). The order is found by running one forward pass on
  ``example_input`` with hooks, not from the registration order of the modules;
  ``keep_real=`` (module-name patterns, ``fnmatch`` style) keeps more layers real and
  ``only=`` restricts the conversion to matching names;
* **activations** — modules of :data:`FLOAT_ACTIVATIONS` (``nn.ReLU``, ``nn.Hardtanh``,
  ``nn.Tanh``, ...) become the chosen registered binary activation (``"stochastic"``,
  ``"sign"``, ``"heaviside"``, ``"quant_relu"``, ... with ``activation_options``) or are
  kept (``activation="keep"``);
* **report** — :class:`BinarizeReport` (attached as ``model.binarize_report``) lists what
  was replaced, what was kept real and why, and the activations it could **not** replace
  because ``forward`` calls them as functions (``F.relu``, ``torch.tanh``, ``x.relu()``):
  these are detected during the traced forward with a ``__torch_function__`` mode and
  also raised as a ``UserWarning``.

>>> import torch
>>> from torch import nn
>>> float_net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
>>> net = binarize(float_net, torch.zeros(1, 4), activation="sign")
>>> [type(m).__name__ for m in net]
['Linear', 'Sign', 'BinaryLinear', 'Sign', 'Linear']
>>> net.binarize_report.kept_real[0]
('0', 'Linear', 'first weight layer in execution order')
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from stbin._registry import check_choice
from stbin.nn.binary import CHANNEL_SCALES, WEIGHT_KINDS
from stbin.nn.registry import BINARY_MODULES, BinaryModule
from stbin.nn.transfer import DEFAULT_QUANTILE

#: float activation modules :func:`binarize` replaces (extend with :func:`register_float_activation`)
FLOAT_ACTIVATIONS: list[type[nn.Module]] = [nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh, nn.LeakyReLU, nn.PReLU,
                                            nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
                                            nn.Softsign, nn.Tanhshrink]
#: functions that are activations when a ``forward`` calls them directly
FUNCTIONAL_ACTIVATIONS: dict[Callable[..., Any], str] = {
    F.relu: "F.relu", F.relu_: "F.relu_", F.relu6: "F.relu6", F.hardtanh: "F.hardtanh", F.hardtanh_: "F.hardtanh_",
    F.leaky_relu: "F.leaky_relu", F.elu: "F.elu", F.selu: "F.selu", F.celu: "F.celu", F.gelu: "F.gelu",
    F.silu: "F.silu", F.mish: "F.mish", F.hardswish: "F.hardswish", F.tanh: "F.tanh", F.prelu: "F.prelu",
    torch.relu: "torch.relu", torch.relu_: "torch.relu_", torch.tanh: "torch.tanh",
    torch.Tensor.relu: "Tensor.relu", torch.Tensor.relu_: "Tensor.relu_", torch.Tensor.tanh: "Tensor.tanh",
    torch.Tensor.tanh_: "Tensor.tanh_",
}
KEEP = "keep"


def register_float_activation(module_type: type[nn.Module]) -> None:
    """Let :func:`binarize` replace modules of ``module_type`` by the chosen binary activation."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"expected an nn.Module subclass, got {module_type!r}")
    if module_type not in FLOAT_ACTIVATIONS:
        FLOAT_ACTIVATIONS.append(module_type)


@dataclass
class BinarizeReport:
    """What :func:`binarize` did. Rows are tuples of strings.

    Attributes:
        replaced: ``(name, old type, new type)`` per converted module.
        kept_real: ``(name, type, reason)`` per weight layer left real-valued.
        functional: ``(module name, function)`` per activation called as a function in a
            ``forward`` (not replaceable: rewrite the model with an activation module).
        not_executed: names of weight layers the traced forward did not call.
        execution_order: names of the weight layers in the order the forward called them.
        notes: warnings about the converted structure (e.g. max pooling of sampled units).
    """

    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    kept_real: list[tuple[str, str, str]] = field(default_factory=list)
    functional: list[tuple[str, str]] = field(default_factory=list)
    not_executed: list[str] = field(default_factory=list)
    execution_order: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"binarize: {len(self.replaced)} modules replaced, {len(self.kept_real)} weight layers kept real"]
        lines += [f"  replaced   {n or '(model)'}: {a} -> {b}" for n, a, b in self.replaced]
        lines += [f"  kept real  {n}: {t} ({why})" for n, t, why in self.kept_real]
        lines += [f"  NOT replaced (functional call in forward) {n or '(model)'}: {f}" for n, f in self.functional]
        lines += [f"  not executed in the traced forward: {n}" for n in self.not_executed]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class _Trace(TorchFunctionMode):
    """Records functional activation calls, attributed to the innermost running module."""

    def __init__(self, stack: list[str], skip: list[bool]) -> None:
        super().__init__()
        self.stack, self.skip = stack, skip
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = FUNCTIONAL_ACTIVATIONS.get(func)
        if name is not None and not (self.skip and self.skip[-1]):
            call = (self.stack[-1] if self.stack else "", name)
            if call not in self.calls:
                self.calls.append(call)
        return func(*args, **(kwargs or {}))


def trace_execution(model: nn.Module, example_input: Any) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(weight-layer names in execution order, functional activation calls, leaf-module names in
    execution order) of one forward pass.

    The forward runs under ``torch.no_grad`` in evaluation mode (each module's train/eval
    flag and the batch-norm running statistics are restored afterwards).
    """
    replaceable = tuple(t for e in BINARY_MODULES.entries("weight_layer") for t in e.replaces)
    order: list[str] = []
    leaves: list[str] = []
    stack: list[str] = []
    skip: list[bool] = []
    handles = []

    def pre(name: str, m: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, inp: Any) -> None:
            stack.append(name)
            skip.append(isinstance(mod, tuple(FLOAT_ACTIVATIONS)))
            if type(mod) in replaceable and name not in order:
                order.append(name)
            if not any(True for _ in mod.children()):
                leaves.append(name)
        return hook

    def post(mod: nn.Module, inp: Any, out: Any) -> None:
        stack.pop()
        skip.pop()

    for name, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(pre(name, m)))
        handles.append(m.register_forward_hook(post))
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
    tracer = _Trace(stack, skip)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), tracer:
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
        if buffers:
            model.load_state_dict(buffers, strict=False)
    return order, tracer.calls, leaves


def _match(name: str, patterns: Sequence[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def _check_patterns(kind: str, patterns: Sequence[str], names: list[str]) -> list[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    out = list(patterns)
    for p in out:
        if not isinstance(p, str):
            raise ValueError(f"{kind} must be module-name patterns (strings), got {p!r}")
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            shown = ", ".join(n for n in names if n)[:300]
            raise ValueError(f"{kind} pattern {p!r} matches no module; module names: {shown}")
    return out


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule ``name`` (a dotted path from ``named_modules``, not empty) of ``model`` by ``new``."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def binarize(model: nn.Module, example_input: Any = None, *, weights: str = "bernoulli",
             weight_noise: str = "logistic", weight_noise_scale: float = 1.0, channel_scale: str | None = None,
             activation: str = "stochastic", activation_options: dict[str, Any] | None = None,
             keep_first: bool = True, keep_last: bool = True, keep_real: Sequence[str] = (),
             only: Sequence[str] | None = None, transfer: bool = True, quantile: float = DEFAULT_QUANTILE,
             inplace: bool = False) -> nn.Module:
    """Convert a float model into a binary one (see the module docstring).

    Args:
        model: any ``nn.Module``.
        example_input: one input batch (a tensor, or a tuple of positional arguments); needed
            to find the first / last weight layer in execution order and functional activations.
        weights, weight_noise, weight_noise_scale, channel_scale: options of the binary weight
            layers (see :class:`stbin.nn.BinaryLinear`).
        activation: a registered binary activation name, or ``"keep"``.
        activation_options: its constructor options (e.g. ``{"noise": "uniform", "scale": 0.5}``).
        keep_first, keep_last: keep the first / last executed weight layer real-valued.
        keep_real: module-name patterns kept real; ``only``: convert only matching modules.
        transfer: initialise latent weights from the float weights (else random init).
        quantile: per-channel quantile of |W| used by the Bernoulli transfer.
        inplace: convert ``model`` itself instead of a deep copy.

    Returns:
        The converted model, with the :class:`BinarizeReport` as ``binarize_report``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"binarize needs an nn.Module, got {type(model).__name__}")
    check_choice("weights", weights, WEIGHT_KINDS)
    check_choice("channel_scale", channel_scale, CHANNEL_SCALES)
    activations = BINARY_MODULES.names(kind="activation")
    check_choice("activation", activation, activations + [KEEP])
    act_opts = dict(activation_options or {})
    if activation == KEEP and act_opts:
        raise ValueError("activation_options given but activation='keep'")
    make_act = (lambda: None) if activation == KEEP else (lambda: BINARY_MODULES.get(activation).build(**act_opts))
    make_act()  # validates the options before any work
    layer_opts = {"weights": weights, "weight_noise": weight_noise, "weight_noise_scale": weight_noise_scale,
                  "channel_scale": channel_scale}
    BINARY_MODULES.get("binary_linear").build(1, 1, **layer_opts)  # validates the layer options
    if (keep_first or keep_last) and example_input is None:
        raise ValueError("binarize needs example_input to find the first and last weight layers in execution "
                         "order (or pass keep_first=False, keep_last=False)")
    net = model if inplace else copy.deepcopy(model)
    names = [n for n, _ in net.named_modules()]
    keep_pats = _check_patterns("keep_real", keep_real, names)
    only_pats = None if only is None else _check_patterns("only", only, names)

    report = BinarizeReport()
    order: list[str] = []
    leaves: list[str] = []
    if example_input is not None:
        order, report.functional, leaves = trace_execution(net, example_input)
    report.execution_order = order
    reasons: dict[str, str] = {}
    if order and keep_first:
        reasons[order[0]] = "first weight layer in execution order"
    if order and keep_last:
        reasons.setdefault(order[-1], "last weight layer in execution order")

    for name, m in list(net.named_modules()):
        if not name:
            continue
        entry = BINARY_MODULES.for_float(m)
        is_act = isinstance(m, tuple(FLOAT_ACTIVATIONS)) and type(m) not in {e.cls for e in BINARY_MODULES.entries()}
        if entry is None and not is_act:
            continue
        pat = _match(name, keep_pats)
        excluded = only_pats is not None and _match(name, only_pats) is None
        if entry is not None:
            why = reasons.get(name) or (f"keep_real pattern {pat!r}" if pat else None) or \
                ("not matched by only=" if excluded else None)
            if why:
                report.kept_real.append((name, type(m).__name__, why))
                continue
            if example_input is not None and name not in order:
                report.not_executed.append(name)
            new = entry.from_float(m, quantile=quantile, **layer_opts)  # type: ignore[misc]
            if not transfer:
                new.reset_parameters()  # type: ignore[operator]
        else:
            if activation == KEEP or pat or excluded:
                continue
            new = make_act()
            new.train(m.training)  # type: ignore[union-attr]
        set_submodule(net, name, new)  # type: ignore[arg-type]
        report.replaced.append((name, type(m).__name__, type(new).__name__))
    new_mods = dict(net.named_modules())
    for a, b in zip(leaves, leaves[1:]):
        act, pool = new_mods.get(a), new_mods.get(b)
        sampled_units = isinstance(act, BinaryModule) and act.stochastic and act.precision.weight_bits is None
        if sampled_units and isinstance(pool, nn.modules.pooling._MaxPoolNd) and a != b:
            report.notes.append(f"{type(pool).__name__} {b!r} pools the sampled outputs of {a!r}: a max of random "
                                "±1 units is biased toward +1; pool before the batch norm and activation instead")
    if report.functional:
        calls = ", ".join(f"{f} in {n or 'the model'}" for n, f in report.functional)
        warnings.warn(f"binarize: activations called as functions cannot be replaced ({calls}); use activation "
                      "modules (e.g. nn.ReLU) in the model", UserWarning, stacklevel=2)
    net.binarize_report = report  # type: ignore[assignment]
    return net
