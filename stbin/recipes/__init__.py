"""Paper-reproduction recipes behind ``stbin reproduce NAME``.

A recipe is a list of :class:`Run` s — trainer configurations (preset + ``--set`` style
overrides) executed in order by :func:`stbin.training.train`, where a run may start from
another run's weights (``init_from``: pretrained -> quantized -> identity continuation) —
and a ``summarize`` function that turns the runs' metrics into a Markdown table
(mean ± std over seeds), PNG plots and findings sentences computed from the numbers.

Modules: :mod:`~stbin.recipes.base` (the model and the registry), :mod:`~stbin.recipes.runner`
(:func:`run_recipe`), :mod:`~stbin.recipes.execution` (training a run, resuming it, worker
processes), :mod:`~stbin.recipes.summary` (report helpers), :mod:`~stbin.recipes.results_doc`
(the results document), :mod:`stbin.recipes.catalog` (the recipes, one module each).

Layout of ``--out DIR``: ``DIR/runs/<run key>/`` holds each run (checkpoints, metrics,
``report.md`` and ``recipe-result.json``); runs with the same key are shared between
recipes and reused when their configuration is unchanged (so ``ste-instability`` reuses the
quantized networks of ``activation-quantized``), and a run that was interrupted resumes from
its newest checkpoint of the same configuration. ``DIR/<recipe>/README.md`` is the recipe's
report, with its plots and ``results.json`` beside it. With ``--quick`` everything goes under
``DIR/quick/`` instead, so quick and full runs never mix.

The deep networks' rows train on the dataset given by ``--dataset`` (CIFAR-10 by default).
They are *optional*: when the data is missing (or fails to load) the error is recorded, the
rows say so, and runs that depend on them are skipped; the recipe goes on.
"""

from stbin.recipes.base import (NOT_SELECTED, RECIPES, RESULT_FILE, SKIPPED, Recipe, RecipeContext, Run, get_recipe,
                                recipe_names, register)
from stbin.recipes.execution import write_text
from stbin.recipes.runner import run_recipe, select_runs
from stbin.recipes.summary import (dataset_label, errors_note, final, fmt, images_section, line_plot, mean_curve,
                                   mean_std, run_dataset)

__all__ = ["Run", "Recipe", "RecipeContext", "RECIPES", "RESULT_FILE", "SKIPPED", "NOT_SELECTED", "register",
           "recipe_names", "get_recipe", "run_recipe", "select_runs", "write_text", "dataset_label", "run_dataset",
           "errors_note", "final", "fmt", "images_section", "line_plot", "mean_curve", "mean_std"]
