#!/usr/bin/env bash
# Device check (< 5 minutes on one GPU): CUDA training steps of every recipe (bf16 autocast,
# fused AdamW); `pgf-sim measure` on dense and 2:4 GEMMs from M=1 to 8192 over LLaMA-like and
# held-out-style shapes, each timed as device time in a CUDA graph (kernel) and per call of an
# eager loop (eager); whole-model forwards (eager and CUDA graph, dense and 2:4: BERT-base at the
# PyTorch 2:4 tutorial's batch 16 x 384, GPT-2 forward and decode-shaped steps); then the
# simulator's prediction for the same GPU on the same cases (`pgf-sim validate`) and the fitted
# factors (`pgf-sim calibrate`, not written back). Output files go to ${OUT:-device_check_out}.
# Run from the repository root: PYTHONPATH=$PWD bash benchmarks/device_check.sh [TARGET]
# Dry run on the CPU (tiny shapes, no 2:4, no GPU needed): DEVICE=cpu bash benchmarks/device_check.sh cpu_host
set -euo pipefail
TARGET=${1:-a100_80gb}
PY=${PYTHON:-python}
OUTDIR=${OUT:-device_check_out}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUTDIR"
if [[ $DEVICE == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUTDIR/gpu.txt"
  TRAIN=(--steps 20)
  # 2:4 required: an error, not a silent dense-only file, where the GPU has no 2:4 kernels
  MEASURE=(--dtype fp16 --sparse --timing kernel,eager
           --m 1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
           --nk 4096x4096,11008x4096,8192x8192,14336x4096)
  MODEL_GEMM=(--dtype fp16 --sparse --timing kernel,eager --m 1 --nk 4096x4096)
  BERT=(--model bert_base --batch 16 --seq-len 384)
  GPT=(--model gpt2 --batch 1,16 --seq-len 512)
else
  echo "dry run on $DEVICE: tiny shapes, dense only"
  TRAIN=(--steps 2 --tokens 256 --d 128 --hidden 512 --blocks 2)
  MEASURE=(--tiny --threads 1 --timing kernel,eager)
  MODEL_GEMM=(--tiny --threads 1 --timing kernel,eager --m 1 --nk 64x64)
  BERT=(--model bert_base --batch 1 --seq-len 32)
  GPT=(--model gpt2 --batch 1 --seq-len 16)
fi
# every step under its own timeout, and all of them within DEADLINE_S (default 290 s) in total
DEADLINE_S=${DEADLINE_S:-290}
step() {  # step CAP_S COMMAND...: run COMMAND under min(CAP_S, the seconds left)
  local cap=$1 left=$((DEADLINE_S - SECONDS))
  shift
  if ((left < 5)); then echo "device_check: out of time (${DEADLINE_S} s) before: $*" >&2; return 124; fi
  timeout $((cap < left ? cap : left)) "$@"
}
echo "== training steps per recipe (bf16, fused AdamW) =="
step 80 "$PY" benchmarks/device_check_train.py --device "$DEVICE" "${TRAIN[@]}" | tee "$OUTDIR/train.txt"
echo "== measure: dense and 2:4 GEMMs, kernel (CUDA graph) and eager timing =="
step 100 "$PY" -m pgf_sim measure --device "$DEVICE" --target "$TARGET" "${MEASURE[@]}" \
  --out "$OUTDIR/measured.yaml" | tee "$OUTDIR/measure.txt"
echo "== measure --model: whole forwards, eager and CUDA graph, dense and 2:4 =="
step 40 "$PY" -m pgf_sim measure --device "$DEVICE" --target "$TARGET" "${MODEL_GEMM[@]}" "${BERT[@]}" \
  --out "$OUTDIR/measured_bert.yaml" | tee "$OUTDIR/measure_bert.txt"
step 40 "$PY" -m pgf_sim measure --device "$DEVICE" --target "$TARGET" "${MODEL_GEMM[@]}" "${GPT[@]}" \
  --out "$OUTDIR/measured_gpt2.yaml" | tee "$OUTDIR/measure_gpt2.txt"
echo "== simulator vs this GPU (target $TARGET; held-out error from calibrate) =="
for f in measured measured_bert measured_gpt2; do
  step 15 "$PY" -m pgf_sim validate --measurements "$OUTDIR/$f.yaml" --hw "$TARGET" --no-loo \
    | tee "$OUTDIR/validate_$f.txt" || echo "validate $f.yaml failed (rc $?); going on" >&2
done
step 60 "$PY" -m pgf_sim calibrate "$OUTDIR/measured.yaml" --hw "$TARGET" | tee "$OUTDIR/calibrate.txt"
echo "device_check: done in ${SECONDS} s; files in $OUTDIR"
