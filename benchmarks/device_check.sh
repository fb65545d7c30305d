#!/usr/bin/env bash
# Device check (< 5 minutes on one GPU): CUDA training steps of every recipe (bf16 autocast,
# fused AdamW), then `pgf-sim measure` on dense and 2:4 GEMMs from M=1 upward, then the
# simulator's prediction for the same GPU on the same cases (`pgf-sim validate`) and the
# fitted factors (`pgf-sim calibrate`, not written back). Output files go to ${OUT:-device_check_out}.
# Run from the repository root: PYTHONPATH=$PWD bash benchmarks/device_check.sh [TARGET]
set -euo pipefail
TARGET=${1:-a100_80gb}
PY=${PYTHON:-python}
OUTDIR=${OUT:-device_check_out}
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUTDIR/gpu.txt"
echo "== training steps per recipe (bf16, fused AdamW) =="
timeout 120 "$PY" benchmarks/device_check_train.py --device cuda --steps 20 | tee "$OUTDIR/train.txt"
echo "== measure: dense and 2:4 GEMMs, fp16 =="
timeout 120 "$PY" -m pgf_sim measure --device cuda --dtype fp16 --sparse --target "$TARGET" \
  --m 1,16,64,256,1024,4096 --nk 4096x4096,11008x4096,4096x11008 --out "$OUTDIR/measured.yaml" | tee "$OUTDIR/measure.txt"
echo "== simulator vs this GPU (target $TARGET) =="
timeout 60 "$PY" -m pgf_sim validate --measurements "$OUTDIR/measured.yaml" --hw "$TARGET" | tee "$OUTDIR/validate.txt"
timeout 60 "$PY" -m pgf_sim calibrate "$OUTDIR/measured.yaml" --hw "$TARGET" | tee "$OUTDIR/calibrate.txt"
