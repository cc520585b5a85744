r"""The reference protocol of the estimator study of Shekhovtsov, Yanush & Flach (NeurIPS 2020) and the sweeps beyond it.

* **Data** (:func:`reference_data`): 2-D, two classes, 100 points each. Class +1:
  :math:`x_0 \sim U(-\pi/2, \pi/2)`, :math:`x_1 \sim U(0, 1)`; class -1:
  :math:`x_0 \sim U(-\pi/2, \pi/2)`, :math:`x_1 \sim U(-1, 1)` kept only when
  :math:`x_1 < \cos x_0` (rejection sampling). The classes overlap, so the Bayes error is
  not zero.
* **Network** (:func:`reference_network`): 2-5-5-5-1 — three hidden layers of 5 stochastic
  binary units (logistic noise, scale 1 by default), each after an ``nn.Linear``, and a
  linear output giving one logit; all weights and biases :math:`\sim U(-1, 1)`.
* **Loss** (:func:`logistic_loss`): binary cross-entropy on the logit with ±1 labels,
  :math:`\ell = \log(1 + e^{-y\,o})`, per example.
* **Training** (:func:`train_snapshots`): SGD, lr 0.03, momentum 0.9, batches of 10,
  reshuffled every epoch, on the **exact** expected loss (:mod:`stbin.analysis.exact`), so
  that the snapshots do not favour any of the estimators being compared (the authors
  trained with an estimator); snapshots after 1, 100 and 2000 epochs.
* **Measurement** (:func:`measure_snapshot`): on every snapshot, the exact gradient of the
  mean loss over all 200 points and K single-sample estimates per estimator, summarised
  by :mod:`stbin.analysis.metrics` for each parameter tensor, each layer (weight and
  bias together) and all parameters, as functions of M.
* **Sweeps** (:func:`run_lab`): depth, width, noise scale and noise family, each network
  trained the same way for ``sweep_epochs`` epochs, fewer estimates, a few values of M.

Everything is seeded from one integer; a run with the same :class:`LabConfig` repeats
exactly (given the same torch build and thread count).
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stbin.analysis.gradient_estimators import parse_method
from stbin.analysis.sampling import sample_gradients
from stbin.analysis.exact import exact_expected_loss, exact_gradients
from stbin.analysis.metrics import DEFAULT_MS, estimator_metrics
from stbin.nn import StochasticSign

#: estimators compared by default
DEFAULT_METHODS = ("st", "det_htanh", "det_tanh", "det_identity", "reinforce", "reinforce_baseline", "arm",
                   "disarm", "concrete:0.1", "concrete:1", "st_concrete:0.1", "st_concrete:1")


def logistic_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-example binary cross-entropy of a logit with a ±1 label: :math:`\log(1+e^{-y o})`."""
    return F.softplus(-target * output.reshape(output.shape[0], -1)[:, 0])


def reference_data(n_per_class: int = 100, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-class 2-D data of the protocol: x (2n, 2), labels y (2n,) in {+1, -1} (class +1 first)."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    half_pi = math.pi / 2

    def u(n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=dtype)

    pos = torch.stack((u(n_per_class, -half_pi, half_pi), u(n_per_class, 0.0, 1.0)), 1)
    neg: list[torch.Tensor] = []
    count = 0
    while count < n_per_class:
        x0, x1 = u(2 * n_per_class, -half_pi, half_pi), u(2 * n_per_class, -1.0, 1.0)
        ok = x1 < torch.cos(x0)
        neg.append(torch.stack((x0[ok], x1[ok]), 1))
        count += int(ok.sum())
    negt = torch.cat(neg)[:n_per_class]
    x = torch.cat((pos, negt))
    y = torch.cat((torch.ones(n_per_class, dtype=dtype), -torch.ones(n_per_class, dtype=dtype)))
    return x, y


def reference_network(depth: int = 3, width: int = 5, in_features: int = 2, noise: str = "logistic",
                      scale: float = 1.0, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` stochastic binary units and a 1-logit output; parameters ~ U(-1, 1)."""
    for name, v in (("depth", depth), ("width", width), ("in_features", in_features)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(depth):
        layers += [nn.Linear(d, width, dtype=dtype), StochasticSign(noise, scale)]
        d = width
    layers.append(nn.Linear(d, 1, dtype=dtype))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(2 * torch.rand(p.shape, generator=generator, dtype=dtype) - 1)
    return model


def layer_groups(model: nn.Sequential) -> dict[str, list[str]]:
    """Parameter names of every affine layer: ``layer1`` .. ``layerD`` for hidden layers, ``output`` for the last."""
    named = dict(model.named_parameters())
    affine = [name for name, m in model.named_children() if any(True for _ in m.parameters(recurse=False))]
    groups = {}
    for k, name in enumerate(affine):
        label = "output" if k == len(affine) - 1 else f"layer{k + 1}"
        groups[label] = [n for n in named if n.startswith(name + ".")]
    return groups


def train_snapshots(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: Sequence[int], *,
                    lr: float = 0.03, momentum: float = 0.9, batch_size: int = 10,
                    generator: torch.Generator | None = None, max_units: int = 64,
                    on_epoch: Callable[[int], None] | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Train on the exact expected loss with SGD and return state dicts after each epoch in ``epochs``.

    Epoch 0 (if listed) is the initialisation. ``model`` ends in the state of the last epoch.
    """
    want = sorted(set(int(e) for e in epochs))
    if not want or want[0] < 0:
        raise ValueError(f"epochs must be non-negative integers, got {list(epochs)}")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    n = x.shape[0]
    if 0 in want:
        snaps[0] = copy.deepcopy(model.state_dict())
    for ep in range(1, want[-1] + 1):
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            exact_expected_loss(model, logistic_loss, x[idx], y[idx], max_units=max_units).backward()
            opt.step()
        if ep in want:
            snaps[ep] = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(ep)
    return snaps


@dataclass
class LabConfig:
    """Everything a lab run does (defaults: the full protocol; :meth:`quick` a < 1 minute version)."""

    seed: int = 0
    epochs: tuple[int, ...] = (1, 100, 2000)
    n_estimates: int = 20000
    ms: tuple[int, ...] = DEFAULT_MS
    methods: tuple[str, ...] = DEFAULT_METHODS
    depth: int = 3
    width: int = 5
    noise: str = "logistic"
    scale: float = 1.0
    n_per_class: int = 100
    sweep: bool = True
    sweep_epochs: int = 100
    sweep_estimates: int = 2000
    sweep_ms: tuple[int, ...] = (1, 10, 100)
    sweep_depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    sweep_widths: tuple[int, ...] = (2, 3, 5, 8)
    sweep_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    sweep_noises: tuple[str, ...] = ("logistic", "uniform", "gaussian")
    timing_repeats: int = 20

    @classmethod
    def quick(cls, **kw: Any) -> "LabConfig":
        base = dict(epochs=(1, 100), n_estimates=1000, ms=(1, 2, 5, 10, 20, 50, 100, 200),
                    sweep_epochs=10, sweep_estimates=300, sweep_ms=(1, 10, 30), sweep_depths=(1, 3),
                    sweep_widths=(3, 5), sweep_scales=(0.5, 1.0, 2.0), sweep_noises=("logistic", "uniform"),
                    timing_repeats=5)
        base.update(kw)
        return cls(**base)

    def validate(self) -> "LabConfig":
        if not self.epochs or any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in self.epochs):
            raise ValueError(f"epochs must be non-negative integers, got {self.epochs}")
        for name in ("n_estimates", "sweep_estimates", "n_per_class"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        if not self.methods:
            raise ValueError("at least one estimator is needed")
        for m in self.methods:
            parse_method(m)
        return self


@dataclass
class LabResult:
    """Rows of metrics (dicts; see :data:`ROW_FIELDS`) and facts about the run."""

    config: LabConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # epoch, exact loss, error rate, grad norms
    timings: dict[str, float] = field(default_factory=dict)


ROW_FIELDS = ("experiment", "epoch", "depth", "width", "noise", "scale", "estimator", "n_estimates", "tensor",
              "M", "n_groups", "grad_norm", "bias", "rel_bias", "variance", "rel_rmse", "cos_mean", "cos_p15",
              "cos_p85")


def measure_snapshot(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, methods: Sequence[str],
                     n_estimates: int, ms: Sequence[int], generator: torch.Generator, *, max_units: int = 64,
                     on_method: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Metrics rows (``estimator`` + metric fields) of every method on one snapshot, over all of ``x``."""
    exact = exact_gradients(model, logistic_loss, x, y, max_units=max_units)
    groups: dict[str, list[str]] = {n: [n] for n in exact}
    groups.update(layer_groups(model))
    groups["all"] = list(exact)
    rows = []
    for m in methods:
        samples = sample_gradients(model, logistic_loss, x, y, m, n_estimates, generator)
        for r in estimator_metrics(samples, exact, [M for M in ms if M <= n_estimates], groups=groups):
            rows.append({"estimator": m, "n_estimates": n_estimates, **r})
        if on_method is not None:
            on_method(m)
    return rows


def _error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_units: int) -> float:
    """Expected 0-1 error of the stochastic network: E[1[y * logit < 0]] (exact)."""
    def zero_one(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (t * o[:, 0] < 0).to(o.dtype)
    with torch.no_grad():
        return exact_expected_loss(model, zero_one, x, y, max_units=max_units).item()


def time_exact_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 20) -> float:
    """Median wall time (s) of :func:`exact_gradients` of ``model`` on (x, y)."""
    exact_gradients(model, logistic_loss, x, y, max_units=64)
    ts = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        exact_gradients(model, logistic_loss, x, y, max_units=64)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def _sweep_configs(cfg: LabConfig) -> list[tuple[str, dict[str, Any]]]:
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
    out = [("sweep:depth", {**base, "depth": d}) for d in cfg.sweep_depths]
    out += [("sweep:width", {**base, "width": w}) for w in cfg.sweep_widths]
    out += [("sweep:scale", {**base, "scale": float(s)}) for s in cfg.sweep_scales]
    out += [("sweep:noise", {**base, "noise": nz}) for nz in cfg.sweep_noises]
    return out


def _config_seed(seed: int, c: dict[str, Any], base: dict[str, Any]) -> int:
    """Seed of a network configuration: the protocol's for the base one, else a stable hash of the config."""
    if c == base:
        return seed
    key = f"{c['depth']}|{c['width']}|{c['noise']}|{float(c['scale']):g}".encode()
    return seed + 7919 * (zlib.crc32(key) % 1000003 + 1)


def _reuses_protocol(cfg: LabConfig) -> bool:
    return cfg.sweep_epochs in cfg.epochs


def estimator_work(method: str, n_estimates: int, n_points: int) -> float:
    """Progress units of one estimator run, roughly in the time of one training epoch of the protocol."""
    name = method.partition(":")[0]
    factor = {"arm": 2.5, "disarm": 2.5, "concrete": 1.5, "st_concrete": 1.5}.get(name, 1.0)
    if name.startswith("det_"):
        return 0.5
    return factor * n_estimates * n_points / 25000.0


def lab_work(cfg: LabConfig) -> float:
    """Progress units of :func:`run_lab` (training epochs count 1, estimator runs :func:`estimator_work`)."""
    n_points = 2 * cfg.n_per_class
    n = float(max(cfg.epochs)) + len(cfg.epochs) * sum(estimator_work(m, cfg.n_estimates, n_points)
                                                      for m in cfg.methods)
    if cfg.sweep:
        base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)
        unique = {tuple(sorted(c.items())) for _, c in _sweep_configs(cfg)}
        n += len(unique) * (cfg.sweep_epochs + sum(estimator_work(m, cfg.sweep_estimates, n_points)
                                                   for m in cfg.methods))
        if tuple(sorted(base.items())) in unique and _reuses_protocol(cfg):
            n -= cfg.sweep_epochs
    return n


def run_lab(cfg: LabConfig, progress: Callable[[float, str], None] | None = None) -> LabResult:
    """Run the reference protocol and (if ``cfg.sweep``) the sweeps.

    ``progress(units, what)`` is called as pieces of work end; the units add up to
    :func:`lab_work` ``(cfg)``.

    Seeds: the data come from ``cfg.seed``; every network configuration gets its own seed
    for initialisation, batch order and sampling (the protocol's configuration the
    protocol's seed, so the sweeps' base point is the protocol's own snapshot when
    ``sweep_epochs`` is one of ``epochs``; it is then not trained again).
    """
    cfg.validate()
    res = LabResult(cfg)
    tick = progress or (lambda n, what: None)
    t_start = time.perf_counter()
    x, y = reference_data(cfg.n_per_class, torch.Generator().manual_seed(cfg.seed))
    base = dict(depth=cfg.depth, width=cfg.width, noise=cfg.noise, scale=cfg.scale)

    def build(c: dict[str, Any]) -> tuple[nn.Sequential, int]:
        s = _config_seed(cfg.seed, c, base)
        g = torch.Generator().manual_seed(s * 1000003 + 17)
        return reference_network(c["depth"], c["width"], 2, c["noise"], c["scale"], g), s

    # -- the reference protocol ------------------------------------------------------------
    model, s0 = build(base)
    res.timings["exact_gradients_s"] = time_exact_gradients(model, x, y, cfg.timing_repeats)
    res.timings["exact_gradients_points"] = float(x.shape[0])
    t0 = time.perf_counter()
    snaps = train_snapshots(model, x, y, cfg.epochs, generator=torch.Generator().manual_seed(s0 + 1),
                            on_epoch=lambda ep: tick(1, f"training, epoch {ep}"))
    res.timings["training_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    est_gen = torch.Generator().manual_seed(s0 + 2)
    for ep in sorted(snaps):
        model.load_state_dict(snaps[ep])
        with torch.no_grad():
            loss = exact_expected_loss(model, logistic_loss, x, y, max_units=64).item()
        err = _error_rate(model, x, y, 64)
        exact = exact_gradients(model, logistic_loss, x, y, max_units=64)
        gnorm = math.sqrt(sum(float((g ** 2).sum()) for g in exact.values()))
        res.snapshots.append({"epoch": ep, "expected_loss": loss, "expected_error": err, "grad_norm": gnorm})
        rows = measure_snapshot(model, x, y, cfg.methods, cfg.n_estimates, cfg.ms, est_gen,
                                on_method=lambda m, ep=ep: tick(estimator_work(m, cfg.n_estimates, len(x)),
                                                                f"epoch {ep}: {m}"))
        for r in rows:
            res.rows.append({"experiment": "protocol", "epoch": ep, **base, **r})
    res.timings["estimators_s"] = time.perf_counter() - t0

    # -- sweeps -----------------------------------------------------------------------------
    if cfg.sweep:
        t0 = time.perf_counter()
        done: dict[tuple, list[dict[str, Any]]] = {}
        for exp, c in _sweep_configs(cfg):
            key = tuple(sorted(c.items()))
            if key not in done:
                m, sc = build(c)
                desc = f"sweep depth={c['depth']} width={c['width']} {c['noise']} s={c['scale']:g}"
                if c == base and _reuses_protocol(cfg):
                    m.load_state_dict(snaps[cfg.sweep_epochs])
                else:
                    train_snapshots(m, x, y, [cfg.sweep_epochs], generator=torch.Generator().manual_seed(sc + 1),
                                    on_epoch=lambda ep, desc=desc: tick(1, f"{desc}: epoch {ep}"))
                done[key] = measure_snapshot(m, x, y, cfg.methods, cfg.sweep_estimates, cfg.sweep_ms,
                                             torch.Generator().manual_seed(sc + 3),
                                             on_method=lambda meth, desc=desc: tick(
                                                 estimator_work(meth, cfg.sweep_estimates, len(x)), f"{desc}: {meth}"))
            for r in done[key]:
                res.rows.append({"experiment": exp, "epoch": cfg.sweep_epochs, **c, **r})
        res.timings["sweeps_s"] = time.perf_counter() - t0
    res.timings["total_s"] = time.perf_counter() - t_start
    return res


__all__ = ["DEFAULT_METHODS", "LabConfig", "LabResult", "ROW_FIELDS", "layer_groups", "logistic_loss",
           "measure_snapshot", "reference_data", "reference_network", "run_lab", "time_exact_gradients",
           "train_snapshots", "lab_work", "estimator_work"]
