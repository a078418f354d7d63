#!/usr/bin/env bash
# The README's test command: set up, then run the whole test suite on the CPU, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q "$@"
