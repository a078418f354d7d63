#!/usr/bin/env bash
# The checks only a CUDA GPU can run, as one short script (about 12 minutes on one H100).
#
#   bash benchmarks/gpu_checks.sh [OUTDIR] [STEP ...]
#
# Steps (default: all, in this order):
#   pytest  the `gpu`-marked tests (SDXL scenes + differential-diffusion spills in bf16, batched)
#   demo    `synspill demo --device cuda`: procedural data -> lite0 trained with AMP on the GPU ->
#           eval on synthetic and real photos -> watch; its summary lands in OUTDIR/demo.log
#   sdxl    bench_sdxl.py: seconds per 1024^2 SDXL image at the paper's settings vs plain diffusers
#   vlm     bench_vlm.py: Qwen2.5-VL-3B/7B batched generation (split into processor, prefill and
#           decoding, plus a torch.profiler table per size) and LoRA-(V+L) training throughput
#   qlora   bench_vlm.py --quant 4bit on 3B (NF4 through synspill's loader), then
#           `synspill finetune vlm --quant 4bit` for 4 steps on 32 procedural 448^2 images (needs bitsandbytes)
#
# Every model is built from its published config with random weights (same compute as the
# real ones; nothing is downloaded). Each step has its own time limit and log
# (OUTDIR/STEP.log); a failing step does not stop the others; the exit status is the
# number of failed steps. PY picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-checks}
shift || true
STEPS=${*:-pytest demo sdxl vlm qlora}
PY=${PY:-python3}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=${WORK:-/tmp/synspill-gpu}
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=0

run_step() {  # name, seconds, command...
  local name=$1 limit=$2 t0 rc
  shift 2
  echo "== $name (limit ${limit}s) $(date -u +%T)"
  t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0)) s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  grep -E '^\[|mAP|hit rate|img/s|s/epoch|tokens/s|passed|skipped|failed|error|Error' "$OUT_DIR/$name.log" | tail -n 40
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  "$PY" -m synspill env
} >"$OUT_DIR/env.log" 2>&1
head -n 3 "$OUT_DIR/env.log"

for step in $STEPS; do
  case $step in
    pytest) run_step pytest 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/synth/test_sdxl.py ;;
    demo) run_step demo 300 "$PY" -m synspill demo --device cuda --out "$WORK/demo" --force ;;
    sdxl) run_step sdxl 150 "$PY" benchmarks/bench_sdxl.py --images 2 ;;
    vlm) run_step vlm 240 "$PY" benchmarks/bench_vlm.py --gpu-only --sizes "${VLM_SIZES:-3B,7B}" --profile "$OUT_DIR/vlm-profile.txt" ;;
    qlora)
      run_step qlora 240 bash -c "
        '$PY' -m synspill scenes --backend procedural --n 32 --size 448 --out '$WORK/vq/scenes' --force &&
        '$PY' -m synspill inpaint --backend procedural --scenes '$WORK/vq/scenes' --propose --out '$WORK/vq/data' --force &&
        '$PY' benchmarks/bench_vlm.py --gpu-only --sizes 3B --quant 4bit --save '$WORK/qwen3b-random' &&
        '$PY' -m synspill finetune vlm --model '$WORK/qwen3b-random' --data '$WORK/vq/data/annotations.json' \\
          --out '$WORK/qlora' --quant 4bit --device cuda --steps 4 --batch 4 --grad-accum 1 --force &&
        cat '$WORK/qlora/run.json'" ;;
    *) echo "unknown step $step (pytest, demo, sdxl, vlm, qlora)"; failed=$((failed + 1)) ;;
  esac
done
echo "== done: $failed failed step(s)"
exit "$failed"
