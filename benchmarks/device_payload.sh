#!/usr/bin/env bash
# The packages the first-run benchmark (benchmarks/predict_e2e.py, issue 24) needs on the lent GPU
# machine, which lacks them: SimpleITK (our reader), mamba-ssm and causal-conv1d (upstream's side),
# and upstream's nnMamba.py. A call carries at most 64 MiB with the tree (~35 MB) and mamba-ssm's
# wheel alone is 40 MB, so all of it travels as one xz tar cut into parts of PART_MB, one part a
# call, gathered in /tmp on the warm machine and unpacked once all have come. Nothing is committed.
#
#   here:    bash benchmarks/device_payload.sh build              # -> .devcarry/part-00, part-01, ...
#   here:    PARTS_MB="16 30 30" bash benchmarks/device_payload.sh cut   # the same bytes cut anew
#   device:  bash benchmarks/device_payload.sh keep               # each call, carrying its one part
#   device:  bash benchmarks/device_payload.sh unpack             # -> /tmp/payload/{site,upstream}
#            then predict_e2e.py detached, and `wait` (benchmarks/RESULTS.md has the calls)
#
# build needs ../shared/wheels (mamba-ssm, causal-conv1d built for the device) and the upstream file
# at .upstream/nnMamba.py (lhaof/nnMamba at 6fb35a3); it downloads the SimpleITK wheel from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.devcarry
# Part sizes in MiB, the rest in one last part. A training call carries data/prepared (~14 MB)
# beside the tree (~35 MB), so a part that rides along with it can be at most ~16 MiB; a call that
# carries only the tree can take ~30 MiB.
PARTS_MB=${PARTS_MB:-24 24 24}
GATHER=/tmp/payload_parts

build() {
  local work
  work=$(mktemp -d)
  mkdir -p "$work/payload/site" "$work/payload/upstream" "$CARRY"
  [ -f .upstream/nnMamba.py ] || { echo "device_payload: put upstream's nnMamba.py at .upstream/nnMamba.py" >&2; exit 2; }
  cp .upstream/nnMamba.py "$work/payload/upstream/"
  for wheel in ../shared/wheels/mamba_ssm-*.whl ../shared/wheels/causal_conv1d-*.whl; do
    unzip -q "$wheel" -d "$work/payload/site"
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 -d "$work/sitk" SimpleITK==2.5.7
  unzip -q "$work"/sitk/*.whl -d "$work/payload/site"
  tar cf - -C "$work" payload | xz -9 -T0 > "$work/payload.tar.xz"
  cut_parts "$work/payload.tar.xz"
  rm -rf "$work"
}

cut_parts() {
  # $1 (the whole xz stream) -> $CARRY/part-00.. of PARTS_MB MiB each, the rest last, + their sums
  local whole=$1 offset=0 index=0 size
  rm -f "$CARRY"/part-*
  for size in $PARTS_MB; do
    dd if="$whole" of="$CARRY/part-$(printf %02d $index)" bs=1M skip=$(( offset / 1048576 )) count="$size" status=none
    offset=$(( offset + size * 1048576 )); index=$(( index + 1 ))
  done
  dd if="$whole" of="$CARRY/part-$(printf %02d $index)" bs=1M skip=$(( offset / 1048576 )) status=none
  find "$CARRY" -name 'part-*' -size 0 -delete
  (cd "$CARRY" && sha256sum part-* > parts.sha256)
  ls -l "$CARRY"
  echo "carry one part a call: \"carry\": [\"$CARRY/part-NN\", \"$CARRY/parts.sha256\"]"
}

recut() {
  local whole
  whole=$(mktemp)
  (cd "$CARRY" && sha256sum -c --quiet parts.sha256)
  cat "$CARRY"/part-* > "$whole"
  cut_parts "$whole"
  rm -f "$whole"
}

keep() {
  mkdir -p "$GATHER"
  cp "$CARRY"/part-* "$CARRY/parts.sha256" "$GATHER/"
  (cd "$GATHER" && ls part-* | tr '\n' ' ' && echo "of $(wc -l < parts.sha256) parts kept")
}

wait_for_benchmark() {
  # up to WAIT_S for predict_e2e.py to end, then its folder and log packed into $OUT (<= 8 files come back)
  local deadline=$(( $(date +%s) + ${WAIT_S:-540} ))
  while pgrep -f benchmarks/predict_e2e.py > /dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
  pgrep -f benchmarks/predict_e2e.py > /dev/null && echo "predict_e2e.py still running" || echo "predict_e2e.py ended"
  tail -n 40 /tmp/e2e.log 2>/dev/null || true
  tar czf "${OUT:?}/e2e.tar.gz" -C /tmp e2e e2e.log 2>/dev/null || tar czf "$OUT/e2e.tar.gz" -C /tmp e2e.log
}

unpack() {
  (cd "$GATHER" && sha256sum -c --quiet parts.sha256)
  rm -rf /tmp/payload && cat "$GATHER"/part-* | xz -d | tar xf - -C /tmp
  ls /tmp/payload/site /tmp/payload/upstream
}

case "${1:-}" in
  build) build ;;
  cut) recut ;;
  keep) keep ;;
  unpack) unpack ;;
  wait) wait_for_benchmark ;;
  *) echo "usage: $0 build | cut | keep | unpack | wait" >&2; exit 2 ;;
esac
