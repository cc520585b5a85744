"""A straight-through estimator's backward registered from this test file alone (no stbin file
edited) is used by name by the estimator functions, the modules and the model options."""

from __future__ import annotations

import pytest
import torch

from stbin.estimators import STES, heaviside, quant_relu
from stbin.models.common import QuantSpec, make_activation


def _box(x: torch.Tensor, upper: float) -> torch.Tensor:
    """A toy STE: gradient 1 on [-1, upper], 0 elsewhere."""
    return ((x >= -1) & (x <= upper)).to(x.dtype)


@pytest.fixture
def box_ste():
    STES.register("test_box", _box)
    yield "test_box"
    STES._items.pop("test_box", None)  # the registry is shared by the session


def test_a_registered_ste_is_the_backward_of_heaviside_and_quant_relu(box_ste):
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    heaviside(x, ste=box_ste).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1, 1, 1, 1, 1, 0], dtype=torch.float64))  # upper = 1
    x.grad = None
    y = quant_relu(x, bits=2, alpha=1.0, ste=box_ste)
    y.sum().backward()
    assert torch.equal(x.grad, _box(x.detach(), 3.0))  # the clip of a 2-bit ReLU with alpha 1 is 3
    m = make_activation(QuantSpec(activation="heaviside", ste=box_ste))  # a model option by name
    assert m.ste == box_ste


def test_an_unknown_ste_names_the_registered_ones(box_ste):
    with pytest.raises(ValueError, match="test_box"):
        heaviside(torch.zeros(2), ste="test_bux")
