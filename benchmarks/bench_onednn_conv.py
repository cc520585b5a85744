"""oneDNN's int8 convolution (AMX tiles where the CPU has them) against the engine's XOR-popcount convolution on
ResNet layer shapes: milliseconds per call (minimum over repeats), one thread each (per-core throughput).

For ±1 operands the int8 convolution is exact: the input x in {-1, +1} goes in as the uint8 ``x + 1`` with zero
point 1 (so zero padding is a real 0), the weights as int8 ±1; the float32 output holds the integer dot products.
Each row checks that, then times the engine's ``bconv2d_sign`` (convolution, integer threshold, packing) against
``qconv2d_pointwise`` with a float32 output (the dot products, before any threshold) and with a uint8 output
(clamped to ±1 by a fused hardtanh: what a next layer could read directly). Neither oneDNN timing includes turning
the packed bits into the uint8 map or the float32 output into packed bits (see docs/performance-deploy.md).

    PYTHONPATH=. python benchmarks/bench_onednn_conv.py [--repeats 15]

Needs torch's ``torch.ops.onednn.qconv_prepack`` / ``qconv2d_pointwise``; ``ONEDNN_VERBOSE=1`` shows the kernel used.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

#: (batch, in channels, spatial size, out channels, stride): ResNet-20's three stages and a downsampling layer at
#: batch 64, its first stage at batch 1
SHAPES = ((64, 16, 32, 16, 1), (64, 32, 16, 32, 1), (64, 64, 8, 64, 1), (64, 16, 32, 32, 2), (1, 16, 32, 16, 1))


def best_ms(f, repeats: int) -> float:  # type: ignore[no-untyped-def]
    f()
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    from stbin.deploy import kernels
    from stbin.deploy.packing import n_words, pack_bits

    torch.set_num_threads(1)
    kernels.set_threads(1)
    qconv, prepack = torch.ops.onednn.qconv2d_pointwise, torch.ops.onednn.qconv_prepack
    rng = np.random.default_rng(0)
    print(f"{'layer (3x3, pad 1)':24s} {'batch':>5s} {'popcount':>9s} {'int8 f32 out':>13s} {'int8 u8 out':>12s}  ms")
    for n, c, h, oc, s in SHAPES:
        x = rng.choice(np.array([-1, 1], np.int8), size=(n, c, h, h))
        w = rng.choice(np.array([-1, 1], np.int8), size=(oc, c, 3, 3))
        X = np.ascontiguousarray(pack_bits(x.transpose(0, 2, 3, 1) < 0))
        Wt = np.ascontiguousarray(pack_bits(w.transpose(0, 2, 3, 1) < 0).transpose(1, 2, 3, 0))
        oh = (h + 2 - 3) // s + 1
        S, T = np.ones(oc, np.int32), np.zeros(oc, np.int32)
        out = np.empty((n, oh, oh, n_words(oc)), np.uint64)
        t_pop = best_ms(lambda: kernels.bconv2d_sign(X, Wt, c, s, s, 1, 1, 1, 1, S, T, out), args.repeats)
        wp = prepack(torch.from_numpy(w), torch.ones(oc), 1.0, 1, [s, s], [1, 1], [1, 1], 1, [n, c, h, h])
        u = torch.from_numpy((x + 1).astype(np.uint8)).contiguous(memory_format=torch.channels_last)
        ones, zeros = torch.ones(oc), torch.zeros(oc, dtype=torch.long)

        def f32() -> torch.Tensor:
            return qconv(u, 1.0, 1, wp, ones, zeros, None, [s, s], [1, 1], [1, 1], 1, 1.0, 0, torch.float32, "none", [],
                         "")

        def u8() -> torch.Tensor:
            return qconv(u, 1.0, 1, wp, ones, zeros, None, [s, s], [1, 1], [1, 1], 1, 1.0, 1, torch.uint8, "hardtanh",
                         [-1.0, 1.0], "")
        want = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), None, s, 1)
        assert torch.equal(f32().double(), want), "the int8 convolution is not exact here"
        assert np.array_equal(out, pack_bits(want.permute(0, 2, 3, 1).numpy() < 0)), "the popcount conv differs"
        assert torch.equal(u8().long() - 1, want.clamp(-1, 1).long()), "the uint8 output is not the clamped dot"
        t_f32, t_u8 = best_ms(f32, args.repeats), best_ms(u8, args.repeats)
        print(f"{f'{c}x{h}x{h} -> {oc}, stride {s}':24s} {n:5d} {t_pop:9.3f} {t_f32:13.3f} {t_u8:12.3f}")


if __name__ == "__main__":
    main()
