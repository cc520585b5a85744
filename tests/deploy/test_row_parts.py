"""Row-split float layers: every row is computed once, each part is PyTorch's linear on its rows, errors in a
part reach the caller, and torch's thread count is restored."""

import numpy as np
import pytest
import torch

from stbin.deploy import kernels, row_parts


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(row_parts, "SPLIT_MACS", 0)
    before = kernels.get_threads()
    kernels.set_threads(min(2, kernels.numba.config.NUMBA_NUM_THREADS))  # 2 where the machine has them
    yield
    kernels.set_threads(before)


def test_parts_cover_every_row_once(two_threads):
    seen = []
    row_parts.run_parts(7, 1, lambda lo, hi: seen.append((lo, hi)))
    rows = sorted(r for lo, hi in seen for r in range(lo, hi))
    assert rows == list(range(7)) and len(seen) == kernels.get_threads()


def test_split_linear_is_torchs_linear_per_part_and_restores_threads(two_threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 33)).astype(np.float32)
    w, b = torch.randn(5, 33), torch.randn(5)
    out = np.full((9, 5), np.nan, np.float32)
    parts = []

    def epilogue(y, lo, hi):
        out[lo:hi] = y
        parts.append((lo, hi))
    before = torch.get_num_threads()
    row_parts.torch_linear(x, w, b, epilogue)
    assert torch.get_num_threads() == before and len(parts) == kernels.get_threads()
    with torch.no_grad():
        for lo, hi in parts:
            np.testing.assert_array_equal(out[lo:hi], torch.nn.functional.linear(torch.from_numpy(x[lo:hi]), w, b))


def test_an_error_in_a_part_reaches_the_caller(two_threads):
    def part(lo, hi):
        if lo > 0:
            raise ValueError("part failed")
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="part failed"):
        row_parts.run_parts(8, 1, part)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("macs, split, torch_threads", [
    (row_parts.TORCH_THREADS_MACS - 1, False, 1),   # small: one range on one torch thread
    (row_parts.TORCH_THREADS_MACS, False, 2),       # mid-size: one range on torch's threads, as many as the engine's
    (row_parts.SPLIT_MACS, True, 1),                # large: one range per engine thread, each on one torch thread
])
def test_thread_choice_by_size_and_threads_restored(macs, split, torch_threads, monkeypatch):
    monkeypatch.setattr(row_parts, "_threads", lambda: 2)  # an engine of 2 threads, whatever numba's maximum here
    before_torch = torch.get_num_threads()
    torch.set_num_threads(3)  # restored afterwards whatever the path
    seen = []
    try:
        row_parts.run_parts(8, macs, lambda lo, hi: seen.append((lo, hi, torch.get_num_threads())))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before_torch)
    assert (len(seen) == 2) == split
    assert {t for _, _, t in seen} == {torch_threads}


@pytest.mark.parametrize("engine_threads", [1, 2])
def test_mid_size_linear_is_torchs_linear_on_as_many_threads_as_the_engine(engine_threads, monkeypatch):
    """The demo MLP's first layer at batch 64 (a mid-size range): PyTorch's linear on as many torch threads as the
    engine has, bit for bit. (MKL's values on one and on two threads differ in their last bits for this shape, so
    the thread count is part of "PyTorch's pre-activations"; it must never depend on timings.)"""
    monkeypatch.setattr(row_parts, "_threads", lambda: engine_threads)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    w = torch.from_numpy(rng.standard_normal((512, 784)).astype(np.float32) * 0.05)
    assert row_parts.TORCH_THREADS_MACS <= x.size * w.shape[0] < row_parts.SPLIT_MACS
    out = np.full((64, 512), np.nan, np.float32)
    before = torch.get_num_threads()
    try:
        for _ in range(3):  # the same values at every call
            row_parts.torch_linear(x, w, None, lambda y, lo, hi: out.__setitem__(slice(lo, hi), y))
            torch.set_num_threads(engine_threads)
            with torch.no_grad():
                np.testing.assert_array_equal(out, torch.nn.functional.linear(torch.from_numpy(x), w).numpy())
            torch.set_num_threads(before)
    finally:
        torch.set_num_threads(before)
