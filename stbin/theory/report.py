"""The driver of ``stbin theory``: run the four experiments of the theory lab and write the
Markdown report with its figures.

Experiments on the two-linear-layer model with a binarized ReLU of Yin et al. (ICLR 2019), see
:mod:`stbin.theory.two_layer`:

(a) closed forms against Monte Carlo (values, gradients, coarse gradients, correlations,
    the polar integrals for ``p, q`` against their closed form);
(b) coarse gradient descent with each STE from random starts and from near the spurious
    minimiser (plus a learning-rate sweep and sampled runs);
(c) the one-step change of the empirical loss against the learning rate for several
    sample sizes;
(d) ``<E g_mu, df/dw>`` against the angle for each STE.

Everything is seeded by ``TheoryConfig.seed``. The layout: :mod:`stbin.theory.lab`
(configuration, teacher), :mod:`stbin.theory.experiments`, :mod:`stbin.theory.plots`,
:mod:`stbin.theory.markdown` (findings and document).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from stbin.reporting import require_matplotlib
from stbin.theory import plots as P
from stbin.theory.experiments import (
    experiment_census,
    experiment_correlation,
    experiment_descent,
    experiment_mc,
    experiment_one_step,
)
from stbin.theory.lab import TheoryConfig, make_teacher, w_at_angle
from stbin.theory.markdown import write_markdown

__all__ = ["TheoryConfig", "run_report"]


def run_report(cfg: TheoryConfig, out: Path, progress: bool | None = None, plots: bool = True) -> Path:
    """Run all experiments and write ``report.md`` (and, with ``plots``, the PNGs) into ``out``.

    Args:
        cfg: the sizes of the experiments (validated first).
        out: the output folder (created if missing).
        progress: show a progress bar (None: only on a terminal).
        plots: draw the figures; needs matplotlib, checked before any work starts
            (:class:`stbin.reporting.MissingExtraError` otherwise). ``False`` writes the
            text and tables alone.

    Returns:
        The path of ``report.md``.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    if plots:
        require_matplotlib("the plots of the theory report")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    teacher = make_teacher(cfg.m, cfg.n, rng)
    n_starts = cfg.starts + 1
    total = (5 * 3) + (3 * n_starts + 3 + 3 * len(cfg.lr_sweep)) + 4 + 3 * len(cfg.onestep_sizes) + 4
    bar = tqdm(total=total, desc="stbin theory", disable=None if progress is None else not progress)

    def tick() -> None:
        bar.update(1)

    try:
        bar.set_postfix_str("(a) Monte Carlo")
        mc = experiment_mc(cfg, teacher, rng, tick)
        bar.set_postfix_str("(b) descent")
        desc = experiment_descent(cfg, teacher, rng, tick)
        census = experiment_census(cfg, teacher, rng, tick)
        bar.set_postfix_str("(c) one step")
        # (c) at v = v*, theta = pi/2, ||w|| = 1: the w-part of the coarse step matters there.
        one = experiment_one_step(cfg, teacher, teacher.v_star.copy(), w_at_angle(teacher.w_star, math.pi / 2, 1.0, rng),
                                  rng, tick)
        bar.set_postfix_str("(d) correlation")
        corr = experiment_correlation(cfg, teacher, teacher.v_star.copy(), rng, tick)  # v = v*: (v^T v*)^2 large
    finally:
        bar.close()
    if plots:
        P.plot_descent(desc["runs"], "random", f"coarse gradient descent from {cfg.starts} random starts (lr={cfg.lr})",
                       out / "descent_random.png")
        P.plot_descent(desc["runs"], "near spurious",
                       f"coarse gradient descent from near the spurious minimiser (lr={cfg.lr})",
                       out / "descent_spurious.png", log_loss=False)
        P.plot_sampled(desc["sampled"], cfg.sampled_batch, out / "descent_sampled.png")
        if census["smaller"]:
            P.plot_collapse(census["smaller"], out / "descent_collapse.png")
        P.plot_one_step(one, out / "one_step.png")
        P.plot_correlation(corr, out / "correlation.png")
    return write_markdown(out, cfg, teacher, mc, desc, census, one, corr, time.perf_counter() - t0, plots=plots)
