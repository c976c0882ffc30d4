"""Listing and describing methods must not import torch or diffusers; imports go one way (plugins -> zoo)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
from zoo.cli import main
from zoo.registry import list_methods
for args in (["list"], ["plugins"], ["list", "--json"], *[["info", s.name] for s in list_methods()]):
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps({"heavy": sorted(m for m in ("torch", "diffusers", "transformers", "gradio") if m in sys.modules),
                  "methods": [s.name for s in list_methods()]}))
"""


def test_list_info_plugins_do_not_import_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"listing imported {report['heavy']}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_a_plugin():
    offenders = {str(p.relative_to(ROOT)): sorted(i for i in _imports(p) if i.split(".")[0] == "zoo_plugins")
                 for p in (ROOT / "zoo").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_plugins_import_only_the_core_not_each_other():
    offenders = {}
    for path in (ROOT / "plugins").rglob("*.py"):
        own = path.relative_to(ROOT / "plugins").parts[0]
        others = sorted(i for i in _imports(path)
                        if i.startswith("zoo_plugins.") and i.split(".")[1] != own)
        if others:
            offenders[str(path.relative_to(ROOT))] = others
    assert offenders == {}
