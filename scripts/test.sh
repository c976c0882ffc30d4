#!/usr/bin/env bash
# Install (if needed) both environments and run the whole test suite. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_comfy.sh  # the separate environment with real ComfyUI code (tests/fixtures_comfy.py)
exec .venv/bin/python -m pytest -q "$@"
