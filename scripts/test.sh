#!/usr/bin/env bash
# Install (if needed) both environments and run the whole test suite. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_comfy.sh  # the separate environment with real ComfyUI code (tests/fixtures_comfy.py)
# The example third-party plugin (docs/PLUGINS.md tutorial), installed the way a plugin author installs theirs.
.venv/bin/python -c "import importlib.metadata as m; m.version('zoo-progressive')" 2>/dev/null \
    || .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
        -e examples/zoo-progressive
exec .venv/bin/python -m pytest -q "$@"
