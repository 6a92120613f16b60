#!/usr/bin/env bash
# Train the three shipped models side by side on one GPU, each with a time budget.
# Used on the device machine: data/prepared travels with the call (training needs torch only: the
# batches are generated and augmented on the GPU by nnmamba/train/synth).
#   OUT=/some/folder MINUTES=8 bash scripts/train_shipped.sh
# MINUTES is each model's total training time: with RUNS holding earlier runs (their checkpoints),
# training resumes and stops at MINUTES in all. OUT receives <model>.tar (card, weights, checkpoint).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/shipped}
MINUTES=${MINUTES:-8}
PY=${PY:-python3}
RUNS=${RUNS:-outputs/runs}
MODELS=${MODELS:-brain-structures-seg afids-landmarks scan-type-cls}
BATCH=${BATCH:-2}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
pids=()
for model in $MODELS; do
  resume=()
  [ -f "$RUNS/$model/checkpoint.safetensors" ] && resume=(--resume)
  $PY -m nnmamba train --model "$model" --data data/prepared --out "$RUNS/$model" --minutes "$MINUTES" \
      --scan-backend auto --no-progress --checkpoint-every 100000 --batch-size "$BATCH" "${resume[@]}" >>"$RUNS/$model.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for model in $MODELS; do
  tar cf "$OUT/$model.tar" -C "$RUNS" "$model" "$model.log"
  { echo "=== $model"; tail -n 30 "$RUNS/$model.log"; } >>"$OUT/train.log"
done
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null || true
cat "$OUT/train.log" | grep -E "===|trained|Error|error" | tail -n 20
exit $status
