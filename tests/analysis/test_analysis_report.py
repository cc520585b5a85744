"""Report writing: CSV, plots, and findings that follow the measured numbers."""

from __future__ import annotations

import copy
import csv
import os

import pytest

from stbin.analysis import LabConfig, run_lab
from stbin.analysis.protocol import ROW_FIELDS
from stbin.analysis.report import findings, headline_table, plot_protocol, plot_sweeps, write_csv, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    cfg = LabConfig(epochs=(1, 3), n_estimates=60, ms=(1, 3, 10), methods=("st", "reinforce", "arm", "det_tanh",
                    "concrete:1"), depth=2, width=3, n_per_class=10, sweep=True, sweep_epochs=1, sweep_estimates=20,
                    sweep_ms=(1, 5), sweep_depths=(1, 2), sweep_widths=(2,), sweep_scales=(0.5,),
                    sweep_noises=("uniform",), timing_repeats=1)
    return run_lab(cfg)


def test_csv_has_every_row(tmp_path, result) -> None:
    path = os.path.join(tmp_path, "m.csv")
    write_csv(result.rows, path)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) and list(rows[0]) == list(ROW_FIELDS)


def test_plots_and_report(tmp_path, result) -> None:
    figs = plot_protocol(result, str(tmp_path)) + plot_sweeps(result, str(tmp_path))
    assert [os.path.basename(f) for f in figs] == ["estimators_epoch1.png", "estimators_epoch3.png", "sweeps.png"]
    for f in figs:
        with open(f, "rb") as fh:
            assert fh.read(8) == PNG
    text = open(write_report(result, str(tmp_path), figs)).read()
    assert "## Headline (snapshot after 3 epochs)" in text  # no epoch 100: the middle snapshot
    assert "*Reduced run*" in text
    for m in result.config.methods:
        assert f"| {m} |" in text
    assert "![sweeps.png](sweeps.png)" in text


def _set_cos(result, estimator: str, tensor: str, M: int, value: float):
    res = copy.deepcopy(result)
    for r in res.rows:
        if (r["experiment"], r["estimator"], r["tensor"], r["M"], r["epoch"]) == ("protocol", estimator, tensor, M, 3):
            r["cos_mean"] = value
    return res


def test_findings_follow_the_numbers(result) -> None:
    good = _set_cos(_set_cos(_set_cos(result, "st", "layer1", 1, 0.97), "arm", "layer1", 1, 0.2),
                    "reinforce", "layer1", 1, 0.1)
    text = " ".join(findings(good))
    assert "On layer1 at M = 1, ST has mean cosine 0.970, higher than every unbiased estimator (best: arm 0.200" in text
    bad = _set_cos(_set_cos(good, "st", "layer1", 1, 0.05), "arm", "layer1", 1, 0.6)
    text = " ".join(findings(bad))
    assert "On layer1 at M = 1, ST has mean cosine 0.050, below arm (0.600)." in text


def test_headline_table_cells(result) -> None:
    t = _set_cos(result, "st", "output", 1, 0.123)
    table = headline_table(t, "cos_mean")
    st_line = next(l for l in table.splitlines() if l.startswith("| st |"))
    assert "0.123 / " in st_line
    assert table.splitlines()[0] == "| estimator | layer1 | layer2 | output | all |"
