#!/usr/bin/env bash
# Train the three shipped models side by side on one GPU as one run of a resumable series.
#
# Made for the lent GPU machine (commands of <= 10 minutes, ~30 minutes a session, nothing kept
# between sessions): the first call starts the runs detached; every call (the first included) then
# waits up to WAIT_MINUTES and copies each model's weights-only state (< 16 MiB a file) to $OUT, so
# whatever happens to the machine the last copy can be committed to training_state/ and the next
# session resumes from it (fresh optimiser moments, warm-up again; the step count and the fixed
# schedule carry on).
#
#   OUT=/some/folder RUN_MINUTES=24 WAIT_MINUTES=9 bash scripts/train_gpu.sh      # start + wait + copy
#   OUT=/some/folder WAIT_MINUTES=9 bash scripts/train_gpu.sh                     # later: wait + copy
#
# STEPS_<model> is each model's whole schedule (poly decay over it, across sessions).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/train_gpu}
RUNS=${RUNS:-/tmp/nnmamba_runs}
PY=${PY:-python3}
RUN_MINUTES=${RUN_MINUTES:-24}
WAIT_MINUTES=${WAIT_MINUTES:-9}
MODELS=${MODELS:-brain-structures-seg afids-landmarks scan-type-cls}
declare -A STEPS=([brain-structures-seg]=${STEPS_SEG:-40000} [afids-landmarks]=${STEPS_LANDMARKS:-12000}
                  [scan-type-cls]=${STEPS_CLS:-6000})
declare -A HELDOUT=([brain-structures-seg]=2000 [afids-landmarks]=1000 [scan-type-cls]=1000)
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

start_model() {
  local model=$1 run=$RUNS/$1 resume=()
  mkdir -p "$run"
  if [ -f "training_state/$model/checkpoint.json" ] && [ ! -f "$run/checkpoint.safetensors" ]; then
    # the state's weights: its own file, or the shipped model's when that is the latest state
    $PY -m nnmamba.train.training_state "training_state/$model" "models/$model/weights.safetensors" "$run" || return 1
  fi
  [ -f "$run/checkpoint.safetensors" ] && resume=(--resume)
  setsid nohup $PY -m nnmamba train --model "$model" --data data/prepared --out "$run" \
      --steps "${STEPS[$model]}" --minutes 100000 --run-minutes "$RUN_MINUTES" --heldout-every "${HELDOUT[$model]}" \
      --scan-backend auto --no-progress --checkpoint-every 60 --log-every 100 --weight-average 0.999 "${resume[@]}" \
      >>"$RUNS/$model.log" 2>&1 < /dev/null &
  echo $! > "$RUNS/$model.pid"
}

if [ ! -f "$RUNS/started" ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
  for model in $MODELS; do start_model "$model"; done
  date +%s > "$RUNS/started"
fi

running() { for model in $MODELS; do kill -0 "$(cat "$RUNS/$model.pid")" 2>/dev/null && return 0; done; return 1; }
deadline=$(( $(date +%s) + ${WAIT_MINUTES%.*} * 60 ))
while running && [ "$(date +%s)" -lt "$deadline" ]; do sleep 15; done

mkdir -p "$RUNS/meta"
for model in $MODELS; do
  state=$RUNS/$model/weights_state
  if [ -f "$state/checkpoint.safetensors" ]; then
    cp "$state/checkpoint.safetensors" "$OUT/$model.safetensors"
    cp "$state/checkpoint.json" "$RUNS/meta/$model.json"
  fi
  [ -f "$RUNS/$model/$model/model.json" ] && cp "$RUNS/$model/$model/model.json" "$RUNS/meta/$model.card.json"
  cp "$RUNS/$model.log" "$RUNS/meta/" 2>/dev/null
  echo "=== $model ($(kill -0 "$(cat "$RUNS/$model.pid")" 2>/dev/null && echo running || echo finished))"
  grep -E "step [0-9]+: (loss|held-out)|stopping|Error|error|trained " "$RUNS/$model.log" | tail -n 8
done
tar czf "$OUT/meta.tar.gz" -C "$RUNS" meta   # small files in one (a call brings back at most 8 files)
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null || true
