#!/usr/bin/env bash
# The README's main command: set up, then run the whole pipeline end to end on the
# built-in defaults (procedural data -> lite0 detector, ImageNet backbone frozen -> eval on
# synthetic and real photos -> watch), CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/synspill demo "$@"
