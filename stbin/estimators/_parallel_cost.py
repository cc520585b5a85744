r"""From how many elements a parallel CPU kernel pays for its thread wake-up, measured on this machine.

The samplers and the elementwise kernels (:mod:`stbin.estimators.sampling`, :mod:`stbin.estimators._elementwise`)
have a serial and a parallel loop that give the same numbers. The parallel one costs a wake-up of numba's
threads per call: a few microseconds on a bare-metal machine, but 0.15-0.35 ms on the 2-vCPU VM of the project
(2026-12-02; there the parallel logistic decision pass was slower than the serial one up to about 1 M
elements: 0.55 against 0.20 ms at 262 K). So the size from which the parallel loop is taken is derived from
the wake-up cost, measured once per process and thread count (:func:`parallel_min_numel`):

* ``wake`` = what a parallel loop over ``WORK_ELEMENTS`` elements costs beyond its ideal share of the serial
  loop (``t_parallel - t_serial / T``, medians, each call after a ``PAUSE_SECONDS`` pause: a training step's
  kernels run between torch's operations, after numba's threads went to sleep; back to back, the same VM
  measured 0.13 ms instead of 0.37);
* with ``T`` threads a loop of ``n`` elements at ``e`` seconds each (the kernel's serial cost of an element:
  :data:`SAMPLING_SECONDS`, :data:`ELEMENTWISE_SECONDS`) saves ``n * e * (1 - 1/T)`` when split, so it pays for
  the wake-up from ``n0 = wake / (e * (1 - 1/T))`` elements; the threshold is ``SAFETY * n0``, clamped to
  ``[MIN_NUMEL, MAX_NUMEL]``.

The choice changes only the speed: both loops give identical numbers (the tests force each path).

>>> from stbin.estimators._parallel_cost import SAMPLING_SECONDS, parallel_threshold
>>> parallel_threshold(wake_seconds=0.25e-3, threads=2, element_seconds=SAMPLING_SECONDS)  # the VM: 1.25 M
1250000
>>> parallel_threshold(wake_seconds=10e-6, threads=16, element_seconds=SAMPLING_SECONDS)   # the floor
32768
"""

from __future__ import annotations

import statistics
import time

import numpy as np

#: serial cost of one element of the samplers' loops (the logistic decision pass: Philox word, exp polynomial,
#: comparison), measured at 0.78-0.83 ns on one thread of the project's machine (262 K-2 M elements)
SAMPLING_SECONDS = 0.8e-9
#: the same for the one-pass elementwise kernels (sign, htanh and logistic ST backward): the sign measured
#: 0.40 ns an element, the logistic ST backward 0.57 (1 M and 262 K elements, one thread)
ELEMENTWISE_SECONDS = 0.4e-9
#: the parallel loop is taken where it saves at least this many times the wake-up
SAFETY = 2.0
#: the threshold's range: below MIN_NUMEL a parallel loop never pays; from MAX_NUMEL on it always does
MIN_NUMEL = 1 << 15
MAX_NUMEL = 1 << 22
#: timed calls of each loop (their median counts), after two warm-up calls
CALLS = 7
#: elements of the timed loops (4 MB of float32: about 0.3 ms on one thread) and the pause before each call
WORK_ELEMENTS = 1 << 20
PAUSE_SECONDS = 1e-3

_WAKE: dict[int, float] = {}


def parallel_threshold(wake_seconds: float, threads: int, element_seconds: float) -> int:
    """Elements from which a parallel loop over ``threads`` threads, ``element_seconds`` an element serially,
    pays for a wake-up of ``wake_seconds``."""
    if threads < 2:
        return MAX_NUMEL
    n0 = max(0.0, wake_seconds) / (element_seconds * (1.0 - 1.0 / threads))
    return int(min(MAX_NUMEL, max(MIN_NUMEL, round(SAFETY * n0))))


def _median_seconds(f, a: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    for _ in range(2):
        f(a)
    times = []
    for _ in range(CALLS):
        time.sleep(PAUSE_SECONDS)
        t = time.perf_counter()
        f(a)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_wake_seconds(threads: int) -> float:
    """Seconds that a parallel loop over ``threads`` threads costs beyond ``1/threads`` of its serial twin (see the
    module docstring; numba's threads as set for the samplers). About 20 ms, once per process and thread count."""
    from stbin.estimators import _numba_config
    from stbin.estimators._parallel_loops import touch_parallel, touch_serial

    _numba_config.set_threads(threads)
    a = np.zeros(WORK_ELEMENTS, np.float32)
    return _median_seconds(touch_parallel, a) - _median_seconds(touch_serial, a) / threads


def parallel_min_numel(threads: int, element_seconds: float = SAMPLING_SECONDS) -> int:
    """The threshold for ``threads`` threads and a loop of ``element_seconds`` an element, from this machine's
    wake-up (measured at the first call for that thread count, then kept)."""
    if threads < 2:
        return MAX_NUMEL
    if threads not in _WAKE:
        _WAKE[threads] = measure_wake_seconds(threads)
    return parallel_threshold(_WAKE[threads], threads, element_seconds)
