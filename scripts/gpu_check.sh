#!/usr/bin/env bash
# The GPU path, in one short prepared run: the SD 1.5-architecture LoRA Diffusion-DPO step at 512 px
# (random weights, configs/bench/sd15.json, nothing downloaded), ours vs diffusers' train_diffusion_dpo.py
# on the same card, through `diffalign bench diffusion --against`: pairs/s, peak allocated memory, MFU.
#
#   PEER_SCRIPT=/path/to/train_diffusion_dpo.py bash scripts/gpu_check.sh
#
# Runs (each a fresh process, ours with the latent cache):
#   bf16          both programs, SDPA attention
#   bf16+compile  ours with model.compile=true (the compilation falls in the skipped first steps; its
#                 time is the "first step ends at" figure)
#   bf16+xformers both with xformers attention, only when xformers imports
#   fp16          both programs (MODES="bf16 fp16 ..." to choose)
# Without CUDA it prints one line and exits 0: CI and CPU machines skip it. The Python it uses
# (PYTHON, default .venv/bin/python, else python3) needs the project installed plus wandb and
# tensorboard (the script imports them). Environment: STEPS (12), BATCH (4), REPEATS (1),
# RES (512), PAIRS (64), MODES ("bf16 bf16+compile bf16+xformers"), WORK (outputs/bench/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to $PY: skipped, nothing measured"
  exit 0
fi
SCRIPT=${PEER_SCRIPT:-.cache/peers/train_diffusion_dpo.py}
if [ ! -f "$SCRIPT" ]; then
  "$PY" -m diffalign.cli bench diffusion --against diffusers-script || true
  echo "gpu_check: set PEER_SCRIPT to a copy of the script (default .cache/peers/train_diffusion_dpo.py)"
  exit 2
fi
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STEPS=${STEPS:-12} BATCH=${BATCH:-4} REPEATS=${REPEATS:-1} RES=${RES:-512} PAIRS=${PAIRS:-64}
MODES=${MODES:-"bf16 bf16+compile bf16+xformers"} WORK=${WORK:-outputs/bench/gpu}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"
HAVE_XF=$("$PY" -c "import xformers" 2>/dev/null && echo 1 || echo 0)
common=(bench diffusion --against diffusers-script "$SCRIPT" --arch sd15 --resolution "$RES" --batch "$BATCH"
        --steps "$STEPS" --repeats "$REPEATS" --pairs "$PAIRS" --cache on --workdir "$WORK")
for mode in $MODES; do
  prec=${mode%%+*}
  extra=()
  case "$mode" in
    *+compile) extra=(--ours-set model.compile=true) ;;
    *+xformers)
      if [ "$HAVE_XF" != 1 ]; then echo "== $mode: xformers is not installed, skipped"; continue; fi
      extra=(--ours-set model.xformers=true --script-args=--enable_xformers_memory_efficient_attention) ;;
  esac
  echo "== $mode"
  "$PY" -m diffalign.cli "${common[@]}" --mixed-precision "$prec" "${extra[@]}" --out "$WORK/$mode.json" \
    2>&1 | grep -v "it/s\]\|s/it\]" || echo "gpu_check: $mode failed (see $WORK/runs/*/log.txt)"
done
