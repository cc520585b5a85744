"""The recipe model: :class:`Run`, :class:`Recipe`, :class:`RecipeContext` and the registry.

A recipe is an entry of :data:`RECIPES` that carries its own behaviour: ``runs`` (the trainer
configurations it needs) and ``summarize`` (its report). Adding one is one module in
:mod:`stbin.recipes.catalog` that calls :func:`register` (found there automatically), or a
:func:`register` call from anywhere, e.g. a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stbin._registry import unknown_name_message

RESULT_FILE = "recipe-result.json"
SKIPPED = "skipped: the run it starts from did not finish"  # one reason for all, so reports count them in one line
NOT_SELECTED = "not selected (--only) and not finished before"


@dataclass
class Run:
    """One training run of a recipe.

    ``key``: unique folder name under ``DIR/runs``; ``preset`` + ``overrides``: the trainer
    config (``section.key=value`` strings); ``init_from``: the key of the run whose final
    weights start this one; ``optional``: a failure (e.g. CIFAR-10 missing) is recorded
    instead of raised; ``dataset``: the run trains on the invocation's ``--dataset`` (the deep
    networks' rows), its overrides come from ``--deep-set`` and, for CIFAR-10, its data folder
    from ``--cifar-root``; None: the run keeps the recipe's own data (LeNet-5 / MNIST, the MLPs)
    and takes the ``--set`` overrides; ``tags``: labels for tables.
    """

    key: str
    preset: str
    overrides: list[str]
    seed: int = 0
    init_from: str | None = None
    optional: bool = False
    dataset: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str
    title: str
    runs: Callable[[bool, list[int], str], list[Run]]     # (quick, seeds, dataset of the deep rows) -> runs
    summarize: Callable[["RecipeContext"], str]           # -> Markdown body
    # findings across several summaries of this recipe ((source name, context) each), e.g. for docs/results.md
    compare: Callable[[list[tuple[str, "RecipeContext"]]], list[str]] | None = None


@dataclass
class RecipeContext:
    recipe: Recipe
    quick: bool
    seeds: list[int]
    out: Path                          # DIR/<recipe>
    dataset: str                       # the deep rows' dataset (--dataset)
    runs: list[Run]
    results: dict[str, dict[str, Any]]  # run key -> {"test", "history", "time_s"} or {"error"}

    def result(self, key: str) -> dict[str, Any]:
        return self.results.get(key, {"error": "not run"})


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` (ValueError if its name is taken); returns it."""
    if recipe.name in RECIPES and RECIPES[recipe.name] is not recipe:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    _load_catalog()
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe registered as ``name`` (ValueError naming the valid ones if unknown)."""
    _load_catalog()
    if name not in RECIPES:
        raise ValueError(unknown_name_message("recipe", name, RECIPES))
    return RECIPES[name]


def _load_catalog() -> None:
    """Import every module of :mod:`stbin.recipes.catalog` (each registers its recipe)."""
    import importlib
    import pkgutil

    from stbin.recipes import catalog

    for m in pkgutil.iter_modules(catalog.__path__):
        importlib.import_module(f"{catalog.__name__}.{m.name}")
