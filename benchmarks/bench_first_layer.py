"""The real-input first layer (784 -> 512, then batch norm + sign + packing), four ways, per batch size.

Timed in one run (medians, ``--threads`` threads), for each batch size in ``--batches``:

* **fused loop** (``kernels.float_dense_sign``, the engine at small batches): the engine's own float32
  GEMM loop with the folded batch norm, the sign and the packing in the same pass over each row;
* **BLAS + pack** (the engine at larger batches): float32 ``x @ W^T`` by BLAS (rows split over the
  engine's threads, ``stbin.deploy.ops.float_math.matmul``), then the bias and the vectorised
  threshold-and-pack (``kernels.float_sign_pack``): two passes over the output;
* **sign-select** on bit-packed ±1 weights (for a first layer with binary weights): per weight bit,
  ``acc += x`` or ``acc -= x``, i.e. the add/subtract formulation. It reads 32x fewer weight bytes
  and computes exactly what the float GEMM with ±1 weights computes in the same order (bit for bit:
  ``x * (±1)`` is exact), but spends a select per multiply-add;
* **bit-serial 8-bit** (``stbin.deploy._dense_loops.bitserial_dot``): inputs quantized to 8 bits
  (exact for inputs that are multiples of 1/255 after an affine normalisation, e.g. raw pixels),
  each row split into its 8 bit-planes and XOR-popcounted against the packed weights (word-major,
  eight outputs per ``vpopcntq``, four planes in registers at once), combined as
  ``sum_p 2^p popcount(plane_p ^ w) - 255 * (number of -1 weights)``: the exact **integer** dot
  product, which differs from PyTorch's float32 sum in its rounding (so not bit-identical to
  PyTorch's model near a threshold); timed including the quantization of the float input to
  ``uint8`` (one numpy pass) and the bit-planes, excluding the threshold (a compare per output).

    PYTHONPATH=. python benchmarks/bench_first_layer.py [--batches 1,8,64,256] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import median_seconds
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=False)
def sign_select(X, Wbits, out):  # type: ignore[no-untyped-def]
    """out[i, j] = sum_k (x_ik if weight bit (k, j) is clear else -x_ik), in k order; Wbits (K, ceil(M/64))."""
    n, k = X.shape
    m = out.shape[1]
    for i in prange(n):
        for j in range(m):
            out[i, j] = 0.0
        for kk in range(k):
            xv = X[i, kk]
            for j in range(m):
                bit = (Wbits[kk, j // 64] >> np.uint64(j % 64)) & np.uint64(1)
                out[i, j] += -xv if bit else xv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--k", type=int, default=784)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from stbin.deploy import kernels, pack_sign
    from stbin.deploy._dense_loops import bitserial_dot, bitserial_dot_serial
    from stbin.deploy.ops.float_math import matmul
    from stbin.deploy.packing import n_words

    kernels.set_threads(args.threads)
    rng = np.random.default_rng(0)
    k, m = args.k, args.m
    w = np.where(rng.standard_normal((m, k)) >= 0, 1.0, -1.0).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    wbits = pack_sign(wt)  # (K, ceil(M/64)): bit set = -1
    wp_t = np.ascontiguousarray(pack_sign(w).T)  # word-major (KW, M)
    neg = (w < 0).sum(1).astype(np.int64)
    b = rng.standard_normal(m).astype(np.float32)
    S, T = np.ones(m, np.float32), np.zeros(m, np.float32)
    rows = {}
    print(f"first layer {k} -> {m} + batch norm + sign + packing, {args.threads} threads (median ms)")
    print(f"  {'batch':>5s} {'fused loop':>11s} {'BLAS+pack':>10s} {'sign-select':>12s} {'bit-serial':>11s}")
    for n in [int(v) for v in args.batches.split(",")]:
        x = (np.round(rng.random((n, k)) * 255) / 255).astype(np.float32)  # multiples of 1/255
        bits = np.empty((n, n_words(m)), np.uint64)

        def fused() -> None:
            with kernels.KERNEL_LOCK:
                kernels.float_dense_sign(x, wt, b, S, T, bits)

        def blas() -> None:
            y = matmul(x, wt)
            y += b
            with kernels.KERNEL_LOCK:
                kernels.float_sign_pack(y, S, T, bits)

        sel = np.empty((n, m), np.float32)

        def select() -> None:
            with kernels.KERNEL_LOCK:
                sign_select(x, wbits, sel)

        dot = np.empty((n, m), np.int64)
        planes, acc = np.empty((8 * n, n_words(k)), np.uint64), np.empty((8 * n, m), np.uint64)
        serial = n * k * m < (1 << 24)  # the parallel launch does not pay below ~16 M weight bits

        def bit_serial() -> np.ndarray:
            q = np.rint(x * 255).astype(np.uint8)
            with kernels.KERNEL_LOCK:
                (bitserial_dot_serial if serial else bitserial_dot)(q, wp_t, neg, planes, acc, dot)
            return dot

        select()
        ref = np.zeros((n, m), np.float32)
        for kk in range(k):  # the float GEMM with ±1 weights in k order: sign-select equals it bit for bit
            ref += x[:, kk: kk + 1] * wt[kk]
        exact_select = bool(np.array_equal(sel, ref))
        q = np.round(x * 255).astype(np.int64)
        exact_int = bool(np.array_equal(bit_serial(), q @ w.T.astype(np.int64)))
        reps = args.repeats * (5 if n == 1 else 1)
        t = {name: median_seconds(f, reps, warmup=2) * 1e3
             for name, f in (("fused", fused), ("blas_pack", blas), ("sign_select", select), ("bit_serial", bit_serial))}
        rows[n] = {**t, "sign_select_equals_pm1_float_gemm": exact_select, "bit_serial_integer_exact": exact_int}
        print(f"  {n:5d} {t['fused']:11.3f} {t['blas_pack']:10.3f} {t['sign_select']:12.3f} {t['bit_serial']:11.3f}"
              f"   fastest: {min(t, key=t.get)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"k": k, "m": m, "threads": args.threads, "batches": rows}, f, indent=1)


if __name__ == "__main__":
    main()
