#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv and install distill-zoo into it, editable, with the
# development extras. Safe to run again: it does nothing when pyproject.toml and setup.py have not changed.
#
# torch is installed FIRST and pinned to the CPU build 2.13.0: with no torch present, the dependency resolver would
# pick a multi-GB CUDA build. The development pins (transformers 5.23: 5.24 breaks with the released peft) live in
# constraints-dev.txt; the package itself declares ranges.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.distill-zoo-installed"
want=$(cat pyproject.toml setup.py constraints-dev.txt | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import zoo, torch" 2>/dev/null; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" > "$VENV/pip.log" 2>&1 \
        || { grep -v "^WARNING: Location" "$VENV/pip.log" | tail -30 >&2; echo "distill-zoo: pip install $* failed" >&2; return 1; }
}

echo "distill-zoo: installing torch (CPU build) into $VENV ..." >&2
pip_install "torch==2.13.0"
echo "distill-zoo: installing distill-zoo[dev] (editable) ..." >&2
pip_install -c constraints-dev.txt -e ".[dev]"
"$VENV/bin/python" -c "import zoo, torch, diffusers, transformers, peft" \
    || { echo "distill-zoo: installation failed (see the pip output above)" >&2; exit 1; }
echo "$want" > "$STAMP"
