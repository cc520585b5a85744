"""The real-input x binary-weight first layer: float GEMM against a bit-serial formulation.

The first layer of the demo MLP multiplies real inputs (784 per image) by ±1 weights (512
outputs). Two ways to compute it, timed in one run (medians):

* **float GEMM** (what the engine does, exact as PyTorch up to float rounding): BLAS
  ``x @ W.T`` on float32, the ±1 weights unpacked once;
* **bit-serial 8-bit** (what a binary engine could do instead): quantize the inputs to 8-bit
  unsigned integers, split them into 8 bit-planes and run 8 XNOR-popcount GEMMs against the
  packed weights (``dot(x_b, w) = (dot(2 x_b - 1, w) + sum(w)) / 2`` per plane), then combine
  ``sum_b 2^b dot_b``. This changes the model (inputs quantized to 256 levels) and is timed
  for the GEMMs alone, not the quantization and packing of the planes.

    PYTHONPATH=. python benchmarks/bench_first_layer.py [--batch 256] [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import median_seconds


def median_ms(f, n: int) -> float:
    return median_seconds(f, n) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=784)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from stbin.deploy import kernels, pack_bits, pack_sign

    kernels.set_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.k), dtype=np.float32)
    w = np.where(rng.standard_normal((args.m, args.k)) >= 0, 1.0, -1.0).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    q = np.round(x * 255).astype(np.uint8)
    planes = [pack_bits(((q >> b) & 1) == 0) for b in range(8)]  # bit set = -1 <=> plane bit 0
    wp = pack_sign(w)
    wsum = w.sum(1).astype(np.int64)
    out = np.empty((args.batch, args.m), np.int32)

    def bit_serial() -> np.ndarray:
        acc = np.zeros((args.batch, args.m), np.int64)
        with kernels.KERNEL_LOCK:
            for b, p in enumerate(planes):
                kernels.bgemm(p, wp, args.k, out)
                acc += (out + wsum) << b  # 2 * dot(x_b, w) * 2^b
        return acc

    exact = np.array_equal(bit_serial(), 2 * (q.astype(np.int64) @ w.T.astype(np.int64)))
    with threadpool_limits(args.threads, user_api="blas"):
        t_float = median_ms(lambda: x @ wt, args.repeats)
    t_bits = median_ms(bit_serial, args.repeats)
    print(f"first layer {args.batch}x{args.k} -> {args.m}, {args.threads} threads (medians of {args.repeats})")
    print(f"  float32 GEMM (BLAS)              {t_float:8.3f} ms")
    print(f"  bit-serial 8-bit, 8 binary GEMMs {t_bits:8.3f} ms  (integer result exact: {exact})")
    r = t_float / t_bits
    print(f"  bit-serial is {r:.1f}x faster" if r >= 1 else f"  bit-serial is {1 / r:.1f}x slower")


if __name__ == "__main__":
    main()
