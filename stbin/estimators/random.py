r"""The counter-based random stream of stbin's sampling (Philox4x32-10).

Every stochastic unit and Bernoulli weight on CPU is drawn from **Philox4x32-10** (J. K.
Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel Random Numbers: As Easy as 1, 2,
3", SC 2011), a counter-based generator: a bijection of a 128-bit counter, keyed by 64
bits, whose four 32-bit output words are a pure function of (key, counter). So the draw
of element ``i`` depends on ``i`` and the call's seed only — not on the thread count, the
chunking, or the order in which elements are computed — and sampling runs in parallel
and vectorised with results identical to a serial loop.

**One sampling call** (a tensor of ``n`` elements, row-major logical order):

1. four 32-bit words ``(k0, k1, c2, c3)`` are drawn from a ``torch.Generator``
   (:func:`draw_seed`; the layer's ``generator`` or the default one, so
   ``torch.manual_seed``, the ``generator`` arguments and the RNG state saved in
   checkpoints reproduce the stream, and the generator advances with every call);
2. element ``i`` belongs to tile ``t = i // 2048``; with ``r = i % 2048``, ``j = r % 1024``
   it takes the half ``r // 1024`` (0: the low 16 bits, 1: the high 16 bits) of lane
   ``j // 256`` of block ``b = 256 t + j % 256``, i.e. ``h_i`` = that half of the word
   ``philox4x32_10(counter=(b mod 2^32, b // 2^32, c2, c3), key=(k0, k1))[j // 256]``
   (the tile layout lets the fast kernel use each lane and half as a contiguous run);
   its **tie word** is ``v_i = philox4x32_10(counter=(i mod 2^32, i // 2^32 + 2^31, c2, c3),
   key=(k0, k1))[0]`` (a counter the blocks above never reach: their second word stays
   below ``2^29``);
3. the element's uniform is ``u_i = (h_i 2^32 + v_i) 2^-48`` (48 bits, exact in float64), and
   the sample is ``+1`` iff ``u_i < F(a_i / s)`` (``F`` evaluated in the compute dtype:
   float32 for half types and float32, float64 for float64), ``-1`` otherwise, and ``NaN``
   where ``F(a_i/s)`` is NaN. So ``P(x = +1) = ceil(2^48 F) / 2^48``, within ``2^-48`` of
   ``F(a/s)``.

The 16 bits ``h_i`` decide the comparison unless ``F`` lies in ``h_i``'s own interval
``(h_i 2^-16, (h_i + 1) 2^-16)``, with probability at most ``2^-16`` per element; only then is the
tie word computed. So a Philox block serves eight elements (half the Philox arithmetic of one
32-bit word per element) at a finer resolution than a 32-bit draw.

No uniform tensor is formed: the comparison is fused with the draw
(:mod:`stbin.estimators._philox_numba` on CPU; :func:`sign_from_probability` here is the
pure-torch implementation of the same stream, used where numba is unavailable). For
logistic and uniform noise the evaluation of ``F`` is fused too
(:data:`stbin.estimators.sampling.ONE_PASS`), with the same samples bit for bit: ``F``
above is then torch's value at the element's position in a one-thread evaluation over the
whole tensor.
CUDA tensors keep ``torch.rand`` with the given generator (torch's own parallel Philox).

The published known-answer vectors of Philox4x32-10 (Random123's ``kat_vectors``) are
checked by ``tests/estimators/test_random.py``.
"""

from __future__ import annotations

import torch

#: Philox4x32 multipliers and Weyl key increments (Salmon et al., SC 2011, Sec. 3.2)
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
#: blocks per tile of the element layout (part of the stream's definition: never change it)
TILE_BLOCKS = 256
#: Philox words per tile, and elements per tile (each word serves two elements, 16 bits each)
TILE_WORDS = 4 * TILE_BLOCKS
TILE_ELEMENTS = 2 * TILE_WORDS
#: bits of an element's half-word, and the flag in the tie stream's second counter word
HALF_BITS = 16
TIE_FLAG = 1 << 31
_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
_TWO_POW_32 = 1 << 32


def draw_seed(generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Four 32-bit words ``(k0, k1, c2, c3)`` as an int64 tensor, drawn from ``generator``.

    ``k0, k1`` are the Philox key, ``c2, c3`` the upper counter words of this call. The
    draw advances the generator (the default one when ``generator`` is None), so
    consecutive calls use independent streams and a saved generator state replays them.

    >>> g = torch.Generator().manual_seed(0)
    >>> s = draw_seed(g)
    >>> s.shape, bool(((s >= 0) & (s < 2**32)).all()), torch.equal(s, draw_seed(g))
    (torch.Size([4]), True, False)
    """
    if generator is not None:
        device = generator.device
    return torch.randint(0, _TWO_POW_32, (4,), dtype=torch.int64, generator=generator, device=device)


def _mulhilo(m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of ``m * x`` for 32-bit ``x`` held in int64 (no overflow)."""
    lo16, hi16 = x & 0xFFFF, x >> 16
    p0 = lo16 * m  # < 2^48
    p1 = hi16 * m  # < 2^48
    mid = p0 + ((p1 & 0xFFFF) << 16)  # < 2^49
    return (p1 >> 16) + (mid >> 32), mid & _MASK32


def philox4x32(counter: torch.Tensor, key: torch.Tensor, rounds: int = ROUNDS) -> torch.Tensor:
    """Philox4x32-R of counters ``(..., 4)`` under keys ``(..., 2)`` (32-bit words in int64).

    A pure-torch, vectorised implementation of the published algorithm: ``rounds`` rounds
    of ``(c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))``
    with the key bumped by the Weyl constants between rounds. Returns ``(..., 4)`` words.

    >>> [hex(w) for w in philox4x32(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0])).tolist()]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    c0, c1, c2, c3 = (counter[..., j].to(torch.int64) for j in range(4))
    k0, k1 = key[..., 0].to(torch.int64), key[..., 1].to(torch.int64)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return torch.stack((c0, c1, c2, c3), dim=-1)


def _words(first_tile: int, last_tile: int, seed: torch.Tensor) -> torch.Tensor:
    """The words of tiles ``first_tile .. last_tile``, each tile's 1024 in the layout of one half: ``(tiles, 1024)``."""
    blocks = torch.arange(first_tile * TILE_BLOCKS, (last_tile + 1) * TILE_BLOCKS, dtype=torch.int64)
    counter = torch.stack((blocks & _MASK32, blocks >> 32, seed[2].expand_as(blocks), seed[3].expand_as(blocks)), -1)
    words = philox4x32(counter, seed[:2].expand(blocks.numel(), 2))  # (blocks, 4)
    # tile t, lane l, position j -> words[t * 256 + j, l]
    return words.view(-1, TILE_BLOCKS, 4).transpose(1, 2).reshape(-1, TILE_WORDS)


def stream_halves(n: int, seed: torch.Tensor, start: int = 0) -> torch.Tensor:
    """The 16-bit halves ``h_i`` of elements ``start .. start+n-1`` of the stream of ``seed`` (int64 in [0, 2^16)).

    Pure torch; the result does not depend on how the range is split:
    ``stream_halves(n, s)[k:] == stream_halves(n - k, s, start=k)``.
    """
    seed = seed.to(torch.int64).cpu()
    out = torch.empty(n, dtype=torch.int64)
    if n == 0:
        return out
    first, last = start // TILE_ELEMENTS, (start + n - 1) // TILE_ELEMENTS
    words = _words(first, last, seed)  # (tiles, 1024)
    halves = torch.stack((words & _MASK16, words >> HALF_BITS), 1).reshape(-1)  # tile, half, position
    off = start - first * TILE_ELEMENTS
    out.copy_(halves[off: off + n])
    return out


def tie_words(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """The tie words ``v_i`` of the elements ``index`` (int64, any shape) of the stream of ``seed``.

    >>> tie_words(torch.tensor([0, 5]), torch.tensor([1, 2, 3, 4])).shape
    torch.Size([2])
    """
    seed = seed.to(torch.int64).cpu()
    i = index.to(torch.int64).reshape(-1)
    counter = torch.stack((i & _MASK32, (i >> 32) | TIE_FLAG, seed[2].expand_as(i), seed[3].expand_as(i)), -1)
    return philox4x32(counter, seed[:2].expand(i.numel(), 2))[:, 0].view(index.shape)


def stream_uniforms(n: int, seed: torch.Tensor, start: int = 0) -> torch.Tensor:
    """The uniforms ``u_i = (h_i 2^32 + v_i) 2^-48`` of elements ``start .. start+n-1`` (float64, exact).

    Every tie word is computed: a reference for tests and analyses (the samplers compute a tie
    word only where the half-word leaves the comparison open). The sample is ``+1`` iff ``u_i < F``.
    """
    h = stream_halves(n, seed, start)
    v = tie_words(torch.arange(start, start + n, dtype=torch.int64), seed)
    return (h * _TWO_POW_32 + v).double() * 2.0 ** -48


def sign_from_probability(p: torch.Tensor, seed: torch.Tensor, start: int = 0) -> torch.Tensor:
    """``+1`` where ``u_i < p_i``, ``-1`` elsewhere, NaN where ``p`` is NaN (pure torch).

    ``p`` holds ``F(a/s)`` (any shape, compared in row-major order; element ``k`` of ``p`` is
    element ``start + k`` of the call); the result has ``p``'s dtype and shape. Tile by tile,
    so only a tile of words is alive at a time; a tie word only where the half-word leaves
    the comparison open.

    >>> sign_from_probability(torch.tensor([0.0, 1.0, float("nan")]), torch.tensor([1, 2, 3, 4])).tolist()
    [-1.0, 1.0, nan]
    """
    flat = p.reshape(-1)
    out = torch.empty_like(flat)
    chunk = 32 * TILE_ELEMENTS
    for lo in range(0, flat.numel(), chunk):
        hi = min(lo + chunk, flat.numel())
        u16 = stream_halves(hi - lo, seed, start=start + lo).double() * 2.0 ** -16
        q = flat[lo:hi].double()
        plus = u16 + 2.0 ** -16 <= q  # u < u16 + 2^-16 <= p
        x = torch.where(plus, 1.0, -1.0)
        tie = ~plus & (u16 < q)  # u16 < p < u16 + 2^-16 (NaN fails both tests)
        if bool(tie.any()):
            at = torch.nonzero(tie).view(-1)
            u = u16[at] + tie_words(at + start + lo, seed).double() * 2.0 ** -48
            x[at] = torch.where(u < q[at], 1.0, -1.0)
        out[lo:hi] = torch.where(torch.isnan(q), q, x).to(out.dtype)
    return out.view(p.shape)
