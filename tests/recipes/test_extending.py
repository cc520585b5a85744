"""A recipe added from outside the package: one Recipe entry carrying its runs and its report."""

import json

import pytest

from stbin.recipes import RECIPES, Recipe, RecipeContext, Run, fmt, get_recipe, recipe_names, register, run_recipe


def _runs(quick, seeds, dataset):
    base = ["data.options={n_train=64, n_test=32}", "train.epochs=1"]
    return [Run(f"toy-s{s}", "tiny", base, s, tags={"toy": True}) for s in seeds] + \
        [Run(f"toy-more-s{s}", "tiny", base, s, init_from=f"toy-s{s}") for s in seeds]


def _summarize(ctx: RecipeContext) -> str:
    acc = [ctx.result(f"toy-more-s{s}")["test"]["mode"] for s in ctx.seeds]
    return f"## Toy\n\n| what | test acc. |\n|---|--:|\n| toy | {fmt(acc)} |\n"


def test_a_recipe_registered_from_a_test_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "toy", Recipe("toy", "a toy recipe", _runs, _summarize))
    assert "toy" in recipe_names() and get_recipe("toy").title == "a toy recipe"
    report = run_recipe("toy", tmp_path, quick=True, seeds=2, log=lambda s: None)
    text = report.read_text()
    assert "# stbin reproduce toy: a toy recipe" in text and "| toy | " in text and " ± " in text
    res = json.loads((tmp_path / "quick" / "toy" / "results.json").read_text())
    assert res["runs"]["toy-more-s1"]["init_from"] == "toy-s1" and "mode" in res["runs"]["toy-more-s1"]["test"]
    with pytest.raises(ValueError, match="already registered"):
        register(Recipe("toy", "another toy", _runs, _summarize))
