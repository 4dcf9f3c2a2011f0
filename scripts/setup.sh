#!/usr/bin/env bash
# Create .venv and install morphnas into it.   bash scripts/setup.sh server|test
#   server: the server, training and export (what `morphnas run` needs)
#   test:   that plus the test and benchmark tools, and Ray (the ray extra: its tests)
# PyTorch is installed first: on a machine without an NVIDIA GPU we ask for the 2.13.0 CPU build
# (a bare `torch` requirement could pull a multi-GB CUDA build); with a GPU, pip picks the build.
set -euo pipefail
extra="${1:-server}"
cd "$(dirname "$0")/.."
python3 -c 'import sys; assert sys.version_info >= (3, 11), "morphnas needs Python 3.11+"'
step() { echo "==> setup.sh: $*"; }
[ -x .venv/bin/python ] || { step "creating the virtualenv .venv"; python3 -m venv .venv; }
step "upgrading pip"
.venv/bin/python -m pip install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  step "installing PyTorch (an NVIDIA GPU is present: pip picks the CUDA build; a few minutes)"
  .venv/bin/python -m pip install "torch>=2.2,<3"
elif ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  step "installing PyTorch 2.13.0 for the CPU (no NVIDIA GPU found; about a minute)"
  .venv/bin/python -m pip install "torch==2.13.0" \
    || .venv/bin/python -m pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
step "installing morphnas[${extra}] and its dependencies (editable)"
.venv/bin/python -m pip install -e ".[${extra}]"
echo "installed morphnas[${extra}] into .venv"
