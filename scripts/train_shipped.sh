#!/usr/bin/env bash
# Train the three shipped models side by side on one GPU, each with a time budget.
# Used on the device machine: data/prepared and .whl (MONAI wheel) travel with the call.
#   OUT=/some/folder MINUTES=8 bash scripts/train_shipped.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/shipped}
MINUTES=${MINUTES:-8}
PY=${PY:-python3}
mkdir -p "$OUT"
$PY -c "import monai" 2>/dev/null || $PY -m pip install -q --no-deps --no-index .whl/monai-*.whl
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
RUNS=/tmp/nnmamba_runs
pids=()
for model in brain-structures-seg afids-landmarks scan-type-cls; do
  $PY -m nnmamba train --model "$model" --data data/prepared --out "$RUNS/$model" --minutes "$MINUTES" \
      --scan-backend torch --no-progress --checkpoint-every 100000 >"$RUNS.$model.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for model in brain-structures-seg afids-landmarks scan-type-cls; do
  mkdir -p "$OUT/$model"
  cp "$RUNS/$model/$model/model.json" "$RUNS/$model/$model/weights.safetensors" "$OUT/$model/" 2>/dev/null || true
  { echo "=== $model"; cat "$RUNS.$model.log"; } >>"$OUT/train.log"
done
tail -n 5 "$OUT/train.log"
exit $status
