"""The sampling-only row of ``benchmarks/bench_layers.py``: Bernoulli weights against a copy.

Times drawing ``numel`` Bernoulli weights (logistic noise, float32, ``theta`` uniform on
[-2, 2], ``s = 1``) against a memory copy of the same bytes (read 4 bytes, write 4 bytes
per weight: the memory-bandwidth bound of sampling) and against the sampler stbin used
before its Philox stream (``benchmarks/previous_sampler.py``), all interleaved round by
round in one run (median over the rounds). Variants:

* ``stbin``: the call as a training loop makes it (the previous sample is dropped, so its
  buffer is reused): the one-pass logistic kernel and its exact fix-up;
* ``stbin_two_pass``: the same call forced onto the two-pass path (``F(a/s)`` by torch,
  then the Philox comparison kernel in place; the same numbers);
* ``stbin_fresh``: ``stbin`` with its output allocated anew at every call (page faults);
* ``previous``: ``benchmarks/previous_sampler.py``;
* ``decide_pass``: the one-pass kernel alone (no fix-up, preallocated output);
* ``decide_serial`` and ``decide_cached``: that kernel on one thread, over the whole tensor (streamed
  from memory) and over its first 128 Ki elements again and again to the same count (in cache): the
  difference is what the memory traffic adds to the arithmetic;
* ``philox_cached``: the Philox words alone for the same count of elements (one thread, tile by tile
  into one 4 KiB buffer, no input or output): ``decide_cached`` minus it is the decision's arithmetic
  (the logistic CDF and the comparison);
* ``cdf_pass`` and ``kernel_pass``: the two passes of the two-pass path alone;
* ``uniform`` and ``uniform_two_pass``: ``stbin`` and ``stbin_two_pass`` with uniform noise;
* ``stbin_twin`` and ``uniform_twin``: ``stbin`` and ``uniform`` writing the samples' int8 twin
  too (:mod:`stbin.estimators._twins`; ``stbin`` and ``uniform`` write none);
* ``convert``: the checked int8 conversion of the samples (``stbin.nn._ternary_numba``), the
  pass over the float samples that an exact integer product makes when there is no twin.
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Callable

import numpy as np
import torch

SAMPLING_COPY_RATIO = 2.0  # the bar: sampling within 2x of a memory copy of the same bytes
SAMPLING_SPEEDUP = 10.0  # the bar: sampling >= 10x faster than the previous sampler
VARIANTS = ("copy", "stbin", "stbin_two_pass", "stbin_fresh", "previous", "decide_pass", "decide_serial",
            "decide_cached", "philox_cached", "cdf_pass", "kernel_pass", "uniform", "uniform_two_pass", "stbin_twin",
            "uniform_twin", "convert")
#: elements of the in-cache variant's slice (512 KiB of float32 in and as much out: within a core's L2; the
#: calls' own cost, about 10 us each, adds about 0.08 ns an element)
CACHED = 1 << 17


def philox_words_loop() -> Callable[[int, object, object], int]:
    """A compiled loop ``f(ntiles, w, seed)``: the words of tiles ``0 .. ntiles-1`` of the stream of ``seed``, tile
    by tile into ``w`` (uint32, one tile's words), as the sampling kernels draw them (XOR of a word a tile returned,
    so that the words stay live)."""
    from numba import njit  # noqa: PLC0415

    from stbin.estimators import _philox_numba as ph  # noqa: PLC0415
    from stbin.estimators.random import TILE_BLOCKS, TILE_WORDS  # noqa: PLC0415

    @njit(nogil=True)
    def words(ntiles, w, seed):  # type: ignore[no-untyped-def]
        k0, k1, o2, o3 = ph.seed_words(seed)
        acc = np.uint32(0)
        for t in range(ntiles):
            b = np.uint64(t) * np.uint64(TILE_BLOCKS)
            ph._philox_tile(w, np.uint32(b & np.uint64(0xFFFFFFFF)), np.uint32(b >> np.uint64(32)), k0, k1, o2, o3)
            acc ^= w[t % TILE_WORDS]
        return acc

    return words


def bench_sampling(numel: int, repeats: int, block: float, clock: Callable[[], float]) -> dict:
    """Median ms of every variant (see the module docstring), weights per second, and the two ratios."""
    from stbin.estimators import _logistic_sampling_numba, _twins, bernoulli_weight, sampling  # noqa: PLC0415
    from stbin.estimators._common import path_thresholds  # noqa: PLC0415
    from stbin.estimators.random import TILE_ELEMENTS, TILE_WORDS  # noqa: PLC0415
    from stbin.nn._ternary_numba import to_small_int  # noqa: PLC0415

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from previous_sampler import previous_sample_sign  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(numel, generator=g).mul_(4).sub_(2)
    dst = torch.empty_like(theta)
    prob = torch.sigmoid(theta)
    seed = torch.tensor([1, 2, 3, 4])

    samples = bernoulli_weight(theta, "logistic", 1.0, "sample").numpy()
    ints = torch.empty(numel, dtype=torch.int8).numpy()
    threads = torch.get_num_threads()
    no_twin = 1 << 62

    def fresh() -> None:
        with path_thresholds(reuse_output_min_numel=1 << 62, twin_min_numel=no_twin):
            bernoulli_weight(theta, "logistic", 1.0, "sample")

    def two_pass(noise: str = "logistic") -> None:
        with path_thresholds(elementwise_kernel_min_numel=1 << 62):
            bernoulli_weight(theta, noise, 1.0, "sample")

    def one_pass(noise: str = "logistic", twin: bool = False) -> None:
        consumer = _twins._CONSUMER["wanted"]
        _twins.set_consumer(lambda: True)  # whatever the CPU: the sampler's cost is measured
        try:
            with path_thresholds(twin_min_numel=1 if twin else no_twin):
                bernoulli_weight(theta, noise, 1.0, "sample")
        finally:
            _twins.set_consumer(consumer)

    part, part_out = theta[:CACHED].numpy(), dst[:CACHED].numpy()
    rounds, rest = divmod(numel, CACHED)

    def cached() -> None:  # the same element count, from a slice that stays in cache
        for _ in range(rounds):
            _logistic_sampling_numba.decide(part, part_out, 1.0, seed.numpy(), False)
        if rest:
            _logistic_sampling_numba.decide(part[:rest], part_out[:rest], 1.0, seed.numpy(), False)

    words = philox_words_loop()
    word_buf = np.empty(TILE_WORDS, np.uint32)
    ntiles = -(-numel // TILE_ELEMENTS)

    steps = {
        "copy": lambda: dst.copy_(theta),
        "stbin": one_pass,
        "stbin_two_pass": two_pass,
        "stbin_fresh": fresh,
        "previous": lambda: previous_sample_sign(theta, 1.0),
        "decide_pass": lambda: _logistic_sampling_numba.decide(theta.numpy(), dst.numpy(), 1.0, seed.numpy(),
                                                              torch.get_num_threads() > 1, torch.get_num_threads()),
        "decide_serial": lambda: _logistic_sampling_numba.decide(theta.numpy(), dst.numpy(), 1.0, seed.numpy(), False),
        "decide_cached": cached,
        "philox_cached": lambda: words(ntiles, word_buf, seed.numpy()),
        "cdf_pass": lambda: torch.sigmoid(theta, out=dst),
        "kernel_pass": lambda: sampling._philox_sign_impl(prob, seed),
        "uniform": lambda: one_pass("uniform"),
        "uniform_two_pass": lambda: two_pass("uniform"),
        "stbin_twin": lambda: one_pass("logistic", True),
        "uniform_twin": lambda: one_pass("uniform", True),
        "convert": lambda: to_small_int(samples, ints, 0, threads > 1, threads),
    }
    inner, times = {}, {k: [] for k in steps}

    def timed(fn: Callable[[], object], n: int) -> float:
        t0 = clock()
        for _ in range(n):
            fn()
        return (clock() - t0) / n

    with torch.no_grad():
        for name, fn in steps.items():
            fn()
            once = min(timed(fn, 1) for _ in range(2))
            inner[name] = max(1, int(block / max(once, 1e-6)))
        names = list(steps)
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(timed(steps[name], inner[name]))
    m = {k: statistics.median(v) for k, v in times.items()}
    row = {"numel": numel, **{f"{k}_ms": t * 1e3 for k, t in m.items()},
           **{f"{k}_weights_per_s": numel / t for k, t in m.items()}}
    row["stbin/copy"] = m["stbin"] / m["copy"]
    row["stbin_two_pass/copy"] = m["stbin_two_pass"] / m["copy"]
    row["previous/stbin"] = m["previous"] / m["stbin"]
    row["uniform/copy"] = m["uniform"] / m["copy"]
    row["twin_cost/convert"] = (m["stbin_twin"] - m["stbin"]) / m["convert"]
    return row


def format_sampling(row: dict) -> str:
    lines = [f"sampling {row['numel'] / 1e6:.1f} M Bernoulli weights (logistic, float32), median ms and weights/s:"]
    for k in VARIANTS:
        lines.append(f"  {k:<14} {row[k + '_ms']:9.2f} ms  {row[k + '_weights_per_s'] / 1e9:7.3f} G weights/s")
    lines.append(f"  stbin/copy {row['stbin/copy']:.2f} (bar <= {SAMPLING_COPY_RATIO:g}; two-pass path "
                 f"{row['stbin_two_pass/copy']:.2f}); "
                 f"previous/stbin {row['previous/stbin']:.1f}x faster (bar >= {SAMPLING_SPEEDUP:g}); "
                 f"uniform noise/copy {row['uniform/copy']:.2f}; the int8 twin adds "
                 f"{row['stbin_twin_ms'] - row['stbin_ms']:.2f} ms (logistic), "
                 f"{row['uniform_twin_ms'] - row['uniform_ms']:.2f} ms (uniform) against {row['convert_ms']:.2f} ms "
                 f"for the conversion it saves")
    per = 1e6 / row["numel"]
    lines.append(f"  one thread, ns an element: the kernel in cache {row['decide_cached_ms'] * per:.2f} (its Philox "
                 f"words {row['philox_cached_ms'] * per:.2f}, the decision "
                 f"{(row['decide_cached_ms'] - row['philox_cached_ms']) * per:.2f}), streamed "
                 f"{row['decide_serial_ms'] * per:.2f}")
    return "\n".join(lines)
