"""Index of the estimator lab's metric rows, and the helpers every report part shares."""

from __future__ import annotations

import math
from typing import Any, Iterable

from stbin.analysis.gradient_estimators import parse_method
from stbin.analysis.protocol import LabResult


def is_unbiased(method: str) -> bool:
    """Whether the registered estimator of ``method`` (e.g. ``"arm"``, ``"concrete:0.1"``) is unbiased."""
    return parse_method(method)[0].unbiased


def is_deterministic(method: str) -> bool:
    """Whether ``method`` gives one deterministic estimate (zero variance)."""
    return not parse_method(method)[0].random


class Rows:
    """Index of metric rows for lookups by (experiment, config, estimator, tensor, M)."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self._ix = {self._key(r): r for r in self.rows}

    @staticmethod
    def _key(r: dict[str, Any]) -> tuple:
        return (r["experiment"], r["epoch"], r["depth"], r["width"], r["noise"], float(r["scale"]),
                r["estimator"], r["tensor"], r["M"])

    def get(self, experiment: str, epoch: int, cfg: dict[str, Any], estimator: str, tensor: str, M: int,
            field: str) -> float:
        r = self._ix.get((experiment, epoch, cfg["depth"], cfg["width"], cfg["noise"], float(cfg["scale"]),
                          estimator, tensor, M))
        return math.nan if r is None else float(r[field])

    def values(self, field: str, **eq: Any) -> list[Any]:
        out = []
        for r in self.rows:
            if all(r[k] == v for k, v in eq.items()) and r[field] not in out:
                out.append(r[field])
        return out


def lab_layers(ix: Rows, experiment: str = "protocol") -> list[str]:
    ts = ix.values("tensor", experiment=experiment)
    return [t for t in ts if t.startswith("layer")] + [t for t in ts if t == "output"] + \
        [t for t in ts if t == "all"]


SWEEPS = (("sweep:depth", "depth", "depth (hidden layers)"), ("sweep:width", "width", "width (units per layer)"),
           ("sweep:scale", "scale", "noise scale s"), ("sweep:noise", "noise", "noise family"))


def sweep_values(rows: list[dict[str, Any]], key: str) -> list[Any]:
    """The distinct values of the swept quantity ``key`` in ``rows``: sorted, except noise families
    (kept in the order the rows give them)."""
    xs: list[Any] = []
    for r in rows:
        if r[key] not in xs:
            xs.append(r[key])
    return xs if key == "noise" else sorted(xs)


def fmt_key(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def fmt(v: float, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v != 0 and (abs(v) >= 1000 or abs(v) < 10 ** (-nd)):
        return f"{v:.2e}"
    return f"{v:.{nd}f}"


def headline_epoch(result: LabResult) -> int:
    """The snapshot the report's headline uses: epoch 100 if measured, else the middle one."""
    eps = sorted(s["epoch"] for s in result.snapshots)
    return 100 if 100 in eps else eps[len(eps) // 2]


def headline_ms(result: LabResult) -> tuple[int, int]:
    ms = sorted(M for M in result.config.ms if M <= result.config.n_estimates)
    return ms[0], (100 if 100 in ms else ms[-1])

