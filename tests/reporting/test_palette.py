"""stbin.reporting.palette: 12 series stay apart in colour, line style and marker, also for
readers with a colour-vision deficiency (simulated)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stbin.reporting import COLORS, MAX_DISTINCT, series_style, series_styles

# Published colour-blind-safe sets the palette must be drawn from.
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
TOL_MUTED = {"#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"}

# Machado, Oliveira & Fernandes (IEEE TVCG 2009), severity 1.0, applied in linear RGB.
CVD = {
    "normal": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def linear_rgb(hex_colour: str) -> np.ndarray:
    c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of a linear-RGB colour."""
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ np.clip(rgb, 0, 1)
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 216 / 24389, np.cbrt(t), (24389 / 27 * t + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_twelve_series_have_distinct_colours_styles_and_markers():
    styles = [series_style(i) for i in range(12)]
    assert MAX_DISTINCT == 12
    for key in ("color", "marker"):
        assert len({s[key] for s in styles}) == 12, key
    assert len({s["linestyle"] for s in styles}) >= 4
    assert len({(s["color"], s["linestyle"], s["marker"]) for s in styles}) == 12


def test_colours_come_from_published_colour_blind_safe_sets():
    assert set(COLORS) <= OKABE_ITO | TOL_MUTED
    assert set(COLORS[:8]) == OKABE_ITO


@pytest.mark.parametrize("vision", list(CVD))
def test_series_with_the_same_line_style_differ_in_colour_under_simulated_cvd(vision):
    """Any two of the 12 series are told apart by colour (CIELAB distance > 10 under the
    simulation), and series that also share a line style are far apart (> 20)."""
    sims = [lab(CVD[vision] @ linear_rgb(series_style(i)["color"])) for i in range(12)]
    for i, j in itertools.combinations(range(12), 2):
        d = float(np.linalg.norm(sims[i] - sims[j]))
        same_style = series_style(i)["linestyle"] == series_style(j)["linestyle"]
        assert d > (20.0 if same_style else 10.0), (vision, i, j, d)


def test_simulation_has_power():
    # Red and green, far apart for normal vision, collapse under deuteranopia.
    red, green = linear_rgb("#D55E00"), linear_rgb("#009E73")
    assert np.linalg.norm(lab(red) - lab(green)) > 50
    red2, green2 = linear_rgb("#FF0000"), linear_rgb("#7F8F00")
    assert np.linalg.norm(lab(CVD["deuteranopia"] @ red2) - lab(CVD["deuteranopia"] @ green2)) < 10


def test_cycle_and_options():
    assert series_style(12) == series_style(0)
    assert "marker" not in series_style(3, marker=False)
    assert series_style(2, markevery=0.1)["markevery"] == 0.1
    named = series_styles(["identity", "relu", "clipped_relu"])
    assert [named[k] for k in named] == [series_style(i) for i in range(3)]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0", None])
def test_bad_index(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        series_style(bad)


def test_duplicate_names():
    with pytest.raises(ValueError, match="given twice"):
        series_styles(["a", "a"])
