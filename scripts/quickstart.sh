#!/usr/bin/env bash
# Install (if needed) and run the main job: the toy quickstart, on a CPU, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/diffalign train "${QUICKSTART_CONFIG:-configs/toy/diffusion_dpo.yaml}" "$@"
