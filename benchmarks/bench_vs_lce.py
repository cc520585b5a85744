"""Latency and throughput of Larq Compute Engine (LCE) on the workloads of ``stbin bench-inference``.

Runs with the Python of an environment where LCE is installed (it needs TensorFlow 2.15, which
stbin's own environment does not have); imports neither torch nor stbin:

    python3 -m venv lce-venv
    lce-venv/bin/pip install larq-compute-engine==0.16.0 tensorflow-cpu==2.15.1 larq==0.14.0
    lce-venv/bin/python benchmarks/bench_vs_lce.py --threads 2 --json lce.json

Without LCE it prints one line saying so and exits 0. Timings only depend on shapes, so weights
are Keras' random initialisation and batch norms keep their initial statistics. Each network is
written in **LCE's preferred layout**: NHWC, every binary convolution with ``pad_values=1``
(one-padding: LCE's optimised binary kernels need it; stbin pads with zeros, which costs LCE a
correction pass), dense layers as 1x1 convolutions on (N, 1, 1, C) maps (LCE has binary kernels
for convolutions only), a batch norm right after each binary convolution and the sign folded into
the next layer's ``input_quantizer`` (so that the converter fuses batch norm + sign into the
convolution's output thresholds and writes bit-packed outputs). Differences to the stbin
networks, which only make LCE faster: one-padding instead of zero padding, and Bi-Real Net's
per-channel shift before each sign is left out. Each network is converted with
``larq_compute_engine.convert_keras_model`` for a fixed batch size and run by LCE's TFLite
interpreter (``larq_compute_engine.tflite.python.interpreter.Interpreter``, whole batch per call)
with ``--threads`` threads, once with each kernel setting in ``KERNEL_OPTIONS`` (default BGEMM,
indirect BGEMM, XNNPack for the float layers); the figure is the fastest setting's median wall time
over ``--repeats`` runs (5x more at batch 1).
"""

from __future__ import annotations

import argparse
import sys

from _timing import finish, median_seconds  # this folder's helpers (no torch, no stbin)

NETWORKS = ("linear_4096", "mlp", "binarynet_vgg", "resnet20", "bireal_resnet18")
#: the interpreter settings tried; the figure reported is the fastest (LCE's "best" on this machine)
KERNEL_OPTIONS = {"default": {}, "indirect_bgemm": {"use_indirect_bgemm": True}, "xnnpack": {"use_xnnpack": True}}


def _layers():  # type: ignore[no-untyped-def]
    import larq as lq
    import tensorflow as tf

    L = tf.keras.layers
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)

    def bconv(x, c, k=3, s=1):  # type: ignore[no-untyped-def]
        """Binary conv (sign of its input, ±1 weights, one-padding) + batch norm."""
        pad = "same" if k > 1 else "valid"
        y = lq.layers.QuantConv2D(c, k, strides=s, padding=pad, pad_values=1.0, **binary)(x)
        return L.BatchNormalization(momentum=0.9)(y)

    def bdense(x, c):  # type: ignore[no-untyped-def]
        return bconv(x, c, 1)

    return tf, L, bconv, bdense


def build(name: str, batch: int):  # type: ignore[no-untyped-def]
    import larq as lq

    tf, L, bconv, bdense = _layers()
    if name == "linear_4096":
        x = tf.keras.Input((1, 1, 4096), batch_size=batch)
        return tf.keras.Model(x, bdense(x, 4096))
    if name == "mlp":  # 784-512-512-512-10, real first layer
        x = tf.keras.Input((1, 1, 784), batch_size=batch)
        y = L.BatchNormalization()(L.Conv2D(512, 1, use_bias=False)(x))
        for _ in range(2):
            y = bdense(y, 512)
        y = bdense(y, 10)
        return tf.keras.Model(x, L.Reshape((10,))(y))
    x = tf.keras.Input((32, 32, 3), batch_size=batch)
    if name == "binarynet_vgg":  # 128-128-M-256-256-M-512-512-M-1024-1024-10
        y = L.BatchNormalization()(L.Conv2D(128, 3, padding="same", use_bias=False)(x))
        for c, pool in ((128, True), (256, False), (256, True), (512, False), (512, True)):
            y = bconv(y, c)
            if pool:
                y = L.MaxPool2D(2)(y)
        y = L.Reshape((1, 1, 4 * 4 * 512))(y)
        for c in (1024, 1024, 10):
            y = bdense(y, c)
        return tf.keras.Model(x, L.Reshape((10,))(y))
    if name == "resnet20":  # 16-32-64, 3 blocks of 2 binary convs each, 1x1 real shortcut on downsampling
        y = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(x))
        for stage, c in enumerate((16, 32, 64)):
            for b in range(3):
                s = 2 if stage and b == 0 else 1
                r = bconv(bconv(y, c, 3, s), c)
                sc = y if s == 1 else L.BatchNormalization()(L.Conv2D(c, 1, strides=2, use_bias=False)(
                    lq.quantizers.SteSign()(y)))
                y = L.Add()([r, sc])
        y = L.GlobalAveragePooling2D()(y)
        return tf.keras.Model(x, L.Dense(10)(y))
    if name == "bireal_resnet18":  # 64-128-256-512, 4 blocks each, a real shortcut around every binary conv
        y = L.BatchNormalization()(L.Conv2D(64, 3, padding="same", use_bias=False)(x))
        for stage, c in enumerate((64, 128, 256, 512)):
            for b in range(4):
                s = 2 if stage and b == 0 else 1
                r = bconv(y, c, 3, s)
                sc = y if s == 1 else L.BatchNormalization()(L.Conv2D(c, 1, use_bias=False)(L.AvgPool2D(2)(y)))
                y = L.Add()([r, sc])
        y = L.GlobalAveragePooling2D()(y)
        return tf.keras.Model(x, L.Dense(10)(y))
    raise ValueError(f"unknown network {name!r}; valid: {', '.join(NETWORKS)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--batches", default="1,64", help="batch sizes (default 1,64; linear_4096 uses 256 for the large one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    try:
        import larq_compute_engine as lce
        from larq_compute_engine.tflite.python.interpreter import Interpreter
    except ImportError as e:
        print(f"bench_vs_lce: Larq Compute Engine is not installed ({e}); see this script's docstring")
        return 0
    import numpy as np

    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    for n in names:
        if n not in NETWORKS:
            print(f"bench_vs_lce: error: --networks: unknown network {n!r}; valid: {', '.join(NETWORKS)}",
                  file=sys.stderr)
            return 2
    batches = [int(b) for b in args.batches.split(",")]
    results: dict = {"threads": args.threads, "lce_version": getattr(lce, "__version__", "?"), "networks": {}}
    print(f"Larq Compute Engine {results['lce_version']}, {args.threads} threads (median ms per batch)")
    for n in names:
        results["networks"][n] = {}
        for b in batches:
            b = 256 if n == "linear_4096" and b > 1 else b
            tflite = lce.convert_keras_model(build(n, b))
            shape = (b, 1, 1, 4096) if n == "linear_4096" else (b, 1, 1, 784) if n == "mlp" else (b, 32, 32, 3)
            x = np.random.default_rng(b).standard_normal(shape).astype(np.float32)
            row = {"batch": b}
            for kernels, opts in KERNEL_OPTIONS.items():
                run = Interpreter(tflite, num_threads=args.threads, **opts).interpreter  # whole batch per call
                reps = args.repeats * (5 if b == 1 else 1)
                row[f"{kernels}_ms"] = median_seconds(lambda: run.predict([x]), reps) * 1e3
            row["lce_ms"] = min(row[f"{k}_ms"] for k in KERNEL_OPTIONS)
            results["networks"][n][f"batch_{b}"] = row
            print(f"  {n:17s} batch {b:4d}: {row['lce_ms']:10.3f} ms  ("
                  + ", ".join(f"{k} {row[f'{k}_ms']:.3f}" for k in KERNEL_OPTIONS) + ")")
    return finish(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
