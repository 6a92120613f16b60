#!/usr/bin/env bash
# The main job: all shipped tasks on the embedded sample volume; outputs go to ./outputs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/nnmamba demo --output outputs/demo --overwrite "$@"
