"""Per-epoch metrics written as JSON Lines and CSV (rewritten whole from the history each epoch,
so a resumed run never duplicates or loses rows)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from stbin._io import atomic_write


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_metrics(out_dir: str | Path, history: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``metrics.jsonl`` and ``metrics.csv`` in ``out_dir`` from the list of epoch records."""
    out = Path(out_dir)
    jsonl = "".join(json.dumps(r, sort_keys=False) + "\n" for r in history)
    keys: list[str] = []
    for r in history:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow(r)
    _atomic_write(out / "metrics.jsonl", jsonl)
    _atomic_write(out / "metrics.csv", buf.getvalue())
    return out / "metrics.jsonl", out / "metrics.csv"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
