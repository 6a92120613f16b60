#!/usr/bin/env bash
# The test suite, on CPU (GPU-only tests skip themselves where there is no CUDA device).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q -ra "$@"
