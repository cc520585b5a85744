"""The configurations of the recipes' runs are pinned: a finished run is reused only when its
configuration is unchanged (compared in the canonical form of
:func:`stbin.recipes.execution.canonical_config`: new keys with default values and renamed model
options do not count), so a change here silently retrains hours of runs. If a change is
meant, regenerate tests/recipes/data/run_configs.json (see the function below) and say in the
commit that those runs train again."""

import hashlib
import json
from pathlib import Path

from stbin.recipes import get_recipe, recipe_names
from stbin.recipes.execution import canonical_config
from stbin.training.config import build_config

PINNED = Path(__file__).parent / "data" / "run_configs.json"


def run_config_hashes() -> dict[str, str]:
    out = {}
    for n in recipe_names():
        for ds in ("cifar10", "fashion_mnist"):
            for run in get_recipe(n).runs(False, [0, 1, 2], ds):
                cfg = canonical_config(build_config(run.preset, overrides=list(run.overrides)
                                                    + [f"seed={run.seed}"]).to_dict())
                h = hashlib.sha256(json.dumps([cfg, run.init_from], sort_keys=True).encode()).hexdigest()[:16]
                out[f"{n}|full|{ds}|{run.key}"] = h
    return out


def test_every_pinned_run_keeps_its_configuration():
    pinned = json.loads(PINNED.read_text())
    now = run_config_hashes()
    changed = sorted(k for k in pinned if k in now and now[k] != pinned[k])
    gone = sorted(k for k in pinned if k not in now)
    assert not changed and not gone, f"changed: {changed[:5]}, gone: {gone[:5]}"
