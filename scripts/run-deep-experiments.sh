#!/usr/bin/env bash
# The deep-network measurements of docs/results.md, one experiment queue after another, on CPU.
#
#   SRC=/path/to/stbin-checkout OUT=/work/reproduce-deep scripts/run-deep-experiments.sh
#
# Start it detached so that it outlives the shell (the runs are niced so that they take idle CPU):
#   nohup setsid nice -n 15 scripts/run-deep-experiments.sh > /work/reproduce-deep.log 2>&1 &
# Rerunning it after an interruption (a killed session) reuses every finished run and resumes every
# interrupted one from its last epoch checkpoint, so it can be restarted as often as needed.
#
# Schedules (measured throughput, one torch thread per run: ResNet-20 about 100 training images/s
# on 1x28x28 Fashion-MNIST, VGG-11 about 15-18, the quarter-width BinaryNet / SBN conv nets 55-65):
# the deep networks train on the first 10000 Fashion-MNIST training images (the full 10000-image
# test set), for 12 epochs of the paper's 200 (--epoch-scale 0.06; the identity continuation's small
# learning-rate phase: 1 epoch, then 12).
set -u
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${OUT:-/work/reproduce-deep}
PY=${PY:-/work/main/.venv/bin/python}
JOBS=${JOBS:-2}
export PYTHONPATH="$SRC"
cd "$SRC" || exit 1
R() { echo "=== $(date -u +%FT%TZ) stbin reproduce $*"; "$PY" -m stbin.cli.main reproduce "$@" --jobs "$JOBS"; \
      echo "=== $(date -u +%FT%TZ) exit $?"; }
DEEP=(--dataset fashion_mnist --deep-set data.train_limit=10000 --epoch-scale 0.06)

# (a1) activation-quantized, ResNet-20: float and 2-bit seed 0, and the 4-bit cells (seed 0), first,
#      so that every cell of the table has one seed before the continuations start from its minima
R activation-quantized --out "$OUT" --seeds 3 "${DEEP[@]}" \
  --only 'resnet20-fashion_mnist-fp-s0,resnet20-fashion_mnist-q2-*-s0,resnet20-fashion_mnist-q4-*-s0'
# (c1) sbn-study: the MLPs (MNIST, Fashion-MNIST) with the full 20 epochs, and the conv part on
#      Fashion-MNIST (quarter-width nets, 10000 training images), seed 0
R sbn-study --out "$OUT" --seeds 1 --dataset fashion_mnist --deep-set data.train_limit=10000 \
  --deep-set model.width=0.25 --only 'sbn-mnist-*-s0,sbn-fashion_mnist-*-s0,sbn-conv-*-s0'
# (b) ste-instability from the ResNet-20 2-bit ReLU / clipped-ReLU networks, identity STE and control, seed 0
R ste-instability --out "$OUT" --seeds 1 "${DEEP[@]}" --only 'resnet20-fashion_mnist-q2-*-to-*'
# (a2) activation-quantized, ResNet-20 rows: 3 seeds for the float and 2-bit cells
R activation-quantized --out "$OUT" --seeds 3 "${DEEP[@]}" \
  --only 'resnet20-fashion_mnist-fp-*,resnet20-fashion_mnist-q2-*,resnet20-fashion_mnist-q4-*-s0'
# (d) ste-instability, one LeNet-5 / MNIST cell with the paper's phase lengths (20 epochs at lr 1e-5, then 50)
R ste-instability --out "$OUT-lenet" --seeds 1 --only 'lenet5-q2-relu-to-*'
# (c2) sbn-study: the MLPs with 3 seeds
R sbn-study --out "$OUT" --seeds 3 --dataset fashion_mnist --deep-set data.train_limit=10000 \
  --deep-set model.width=0.25 --only 'sbn-mnist-*,sbn-fashion_mnist-*,sbn-conv-*-s0'
# (e) activation-quantized, VGG-11 2-bit rows, seed 0 (reuses the ResNet-20 runs of (a) in its report)
R activation-quantized --out "$OUT" --seeds 3 "${DEEP[@]}" \
  --only 'resnet20-fashion_mnist-fp-*,resnet20-fashion_mnist-q2-*,resnet20-fashion_mnist-q4-*-s0,vgg11-fashion_mnist-q2-*-s0'
