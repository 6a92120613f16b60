#!/usr/bin/env bash
# The packages the first-run benchmark (benchmarks/predict_e2e.py, issue 24) needs on the lent GPU
# machine, which lacks them: SimpleITK (our reader), mamba-ssm and causal-conv1d (upstream's side),
# and upstream's nnMamba.py. A call carries at most 64 MiB with the tree (~35 MB) and mamba-ssm's
# wheel alone is 40 MB, so all of it travels as one xz tar cut into parts of PART_MB, one part a
# call, gathered in /tmp on the warm machine and unpacked once all have come. Nothing is committed.
#
#   here:    bash benchmarks/device_payload.sh build              # -> .devcarry/part-00, part-01, ...
#   device:  bash benchmarks/device_payload.sh keep               # each call, carrying its one part
#   device:  bash benchmarks/device_payload.sh unpack             # -> /tmp/payload/{site,upstream}
#            then predict_e2e.py detached, and `wait` (benchmarks/RESULTS.md has the calls)
#
# build needs ../shared/wheels (mamba-ssm, causal-conv1d built for the device) and the upstream file
# at .upstream/nnMamba.py (lhaof/nnMamba at 6fb35a3); it downloads the SimpleITK wheel from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.devcarry
PART_MB=${PART_MB:-24}
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
  rm -f "$CARRY"/part-*
  tar cf - -C "$work" payload | xz -9 -T0 | split -b "${PART_MB}M" -d - "$CARRY/part-"
  (cd "$CARRY" && sha256sum part-* > parts.sha256)
  rm -rf "$work"
  ls -l "$CARRY"
  echo "carry one part a call: \"carry\": [\"$CARRY/part-NN\", \"$CARRY/parts.sha256\"]"
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
  keep) keep ;;
  unpack) unpack ;;
  wait) wait_for_benchmark ;;
  *) echo "usage: $0 build | keep | unpack | wait" >&2; exit 2 ;;
esac
