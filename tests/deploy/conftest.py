"""Fixtures shared by the deploy tests."""

import pytest

from stbin.deploy import kernels


@pytest.fixture
def two_threads():
    """The engine at 2 threads. With one numba thread (a 1-core machine) the engine never splits: there is no
    second thread to give a part to (``worth_splitting`` needs two, tested in test_batch_split)."""
    if kernels.numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: the engine has nothing to split over")
    before = kernels.get_threads()
    kernels.set_threads(2)
    yield
    kernels.set_threads(before)
