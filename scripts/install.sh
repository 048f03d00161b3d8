#!/usr/bin/env bash
# Set up orch in ./.venv: the CPU build of torch first (a plain `pip install torch` pulls a
# multi-GB CUDA build), then orch itself with its test extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # PyTorch's CPU wheel index first; where it cannot be reached, the default index (whose
  # torch 2.13.0 may be a CUDA build on Linux x86_64, or a local CPU wheel where one is configured).
  "${PIP[@]}" install --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" 2>/dev/null \
    || "${PIP[@]}" install "torch==2.13.0"
fi
"${PIP[@]}" install -e ".[test]"
