#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtual environment in .venv with the CPU build of PyTorch
# (installed first, so the package's `torch>=` range never pulls a multi-GB CUDA build) and lightmedseg.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The CPU build, named by its local version label: a plain "torch==2.13.0" would take PyPI's CUDA build on a
# machine without the CPU wheel on disk. "+cpu" matches only the CPU wheel (here: pip's find-links), else PyTorch's
# CPU index provides it; nothing else can satisfy it.
.venv/bin/python -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e ".[all,dev]"
echo "lightmedseg installed in $(pwd)/.venv"
