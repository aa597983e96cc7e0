#!/usr/bin/env bash
# Create .venv (if missing) and install diffalign with its dev extra, pinned to the
# torch/torchvision pair in constraints.txt. Idempotent: skips work when pyproject.toml and
# constraints.txt are unchanged since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.diffalign-install-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
# pip prints hundreds of harmless "Location ... is ignored" lines on this machine: keep a log, show it on failure.
pip() {
    .venv/bin/python -m pip --disable-pip-version-check -q "$@" > .venv/pip.log 2>&1 \
        || { grep -v "is ignored: it is neither" .venv/pip.log | tail -40; return 1; }
}
echo "[install] torch/torchvision pair (constraints.txt) ..."
pip install -c constraints.txt torch torchvision
echo "[install] diffalign[dev,audio] (only the torch pair pinned) ..."
pip install -c constraints.txt -e ".[dev,audio]"
.venv/bin/python -c "import torch, torchvision, diffusers, transformers, open_clip, peft, trl; print('[install] ok: torch', torch.__version__)"
echo "$want" > "$stamp"
