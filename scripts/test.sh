#!/usr/bin/env bash
# The README's test command: set up, lint (ruff) and type-check (mypy), then run the whole
# test suite on the CPU, offline. Any failing step fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 MPLBACKEND=Agg
echo "[test] ruff" >&2
.venv/bin/ruff check .
echo "[test] mypy (synspill/, check_untyped_defs)" >&2
.venv/bin/python -m mypy
echo "[test] pytest" >&2
exec .venv/bin/python -m pytest -q "$@"
