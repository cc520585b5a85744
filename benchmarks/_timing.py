"""Shared timing helper of the benchmark scripts (imported from their own folder)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_seconds(f: Callable[[], Any], n: int, warmup: int = 1) -> float:
    """Median wall time of ``n`` calls of ``f`` (after ``warmup`` untimed calls), in seconds."""
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def finish(json_path: str | None, results: Any) -> int:
    """Write ``results`` as JSON to ``json_path`` (when given) and return the scripts' exit status 0."""
    if json_path:
        import json

        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0
