r"""U-statistics over i.i.d. draws of several vector sequences, with delete-a-group jackknife masks.

Draw :math:`i = 1..N` yields vectors :math:`x_i, y_i, \dots` (possibly dependent *within* a
draw, independent across draws). For two sequences the inner product of their expectations
is estimated without bias, per parameter tensor, by

.. math::
   U(x, y) = \frac{1}{N(N-1)}\sum_{i \ne j}\langle x_i, y_j\rangle
           = \frac{\langle \sum_i x_i, \sum_j y_j\rangle - \sum_i\langle x_i, y_i\rangle}{N(N-1)},

so only per-group sums of the vectors and of the within-draw inner products are kept. A
jackknife *mask* selects a set of groups; every statistic is computed for the full set and
for each delete-one-group set at once.

>>> import torch
>>> acc = GroupSums(3, [2], torch.float64, [("x", "x")])
>>> for i, v in enumerate([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]):
...     acc.add(i % 3, {"x": torch.tensor(v, dtype=torch.float64)})
>>> acc.ustat(full_and_jackknife(3), "x", "x")[0].tolist()   # (<a,b> + <a,c> + <b,c>) * 2 / 6
[0.6666666666666666, 0.6666666666666666]
"""

from __future__ import annotations

from typing import Sequence

import torch


def dots(a: torch.Tensor, b: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Per-tensor inner products (T + 1,) of two flat vectors split by ``sizes`` (last: all tensors), float64."""
    q = torch.stack([torch.dot(pa, pb) for pa, pb in zip(torch.split(a, sizes), torch.split(b, sizes))]).double()
    return torch.cat([q, q.sum()[None]])


def full_and_jackknife(groups: int) -> torch.Tensor:
    """Masks (G + 1, G): all groups, then every delete-one-group set."""
    full = torch.ones(1, groups, dtype=torch.float64)
    return torch.cat([full, 1 - torch.eye(groups, dtype=torch.float64)])


class GroupSums:
    """Per-group sums of the draws of named vector sequences, of the within-draw inner products of
    the ``pairs`` (per tensor, last column: all tensors) and of named per-tensor scalars."""

    def __init__(self, groups: int, sizes: Sequence[int], dtype: torch.dtype, pairs: Sequence[tuple[str, str]]
                 ) -> None:
        self.G, self.sizes, self.dtype = groups, list(sizes), dtype
        self.T = len(self.sizes)
        self.S: dict[str, torch.Tensor] = {}
        self.pairs = list(pairs)
        self.diag = {p: torch.zeros(groups, self.T + 1, dtype=torch.float64) for p in self.pairs}
        self.scalars: dict[str, torch.Tensor] = {}
        self.n = torch.zeros(groups, dtype=torch.float64)
        self._grams: dict[tuple[str, str], torch.Tensor] = {}

    def dots(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-tensor inner products (T + 1,) of two flat vectors (last: all tensors), returned in float64
        (each tensor's product in the vectors' dtype, then summed in float64)."""
        return dots(a, b, self.sizes)

    def add(self, g: int, vecs: dict[str, torch.Tensor], scalars: dict[str, torch.Tensor] | None = None) -> None:
        """Add one draw to group ``g``: its vectors by name and per-tensor scalars ((T + 1,) each)."""
        self._grams.clear()
        for k, v in vecs.items():
            if k not in self.S:
                self.S[k] = torch.zeros(self.G, sum(self.sizes), dtype=self.dtype)
            self.S[k][g] += v.to(self.dtype)
        for a, b in self.pairs:
            self.diag[(a, b)][g] += self.dots(vecs[a], vecs[b])
        for k, q in (scalars or {}).items():
            if k not in self.scalars:
                self.scalars[k] = torch.zeros(self.G, self.T + 1, dtype=torch.float64)
            self.scalars[k][g] += q.double()
        self.n[g] += 1

    def gram(self, a: str, b: str) -> torch.Tensor:
        """Per-tensor Gram matrices (T + 1, G, G) of the group sums of ``a`` and ``b`` (each tensor's
        product in the sums' dtype, returned in float64; cached until the next :meth:`add`)."""
        if (a, b) not in self._grams:
            out = [(pa @ pb.T).double() for pa, pb in zip(torch.split(self.S[a], self.sizes, 1),
                                                         torch.split(self.S[b], self.sizes, 1))]
            self._grams[(a, b)] = torch.stack(out + [sum(out)])  # type: ignore[arg-type]
        return self._grams[(a, b)]

    def ustat(self, masks: torch.Tensor, a: str, b: str) -> torch.Tensor:
        """:math:`U(a, b)` for every mask: (J, T + 1). ``(a, b)`` must be one of the ``pairs``."""
        gram = self.gram(a, b)
        N = (masks @ self.n)[:, None]
        quad = torch.einsum("jg,tgh,jh->jt", masks, gram, masks)
        return (quad - masks @ self.diag[(a, b)]) / (N * (N - 1))

    def mean_scalar(self, masks: torch.Tensor, k: str) -> torch.Tensor:
        """The mean over draws of the per-tensor scalar ``k`` for every mask: (J, T + 1)."""
        return (masks @ self.scalars[k]) / (masks @ self.n)[:, None]
