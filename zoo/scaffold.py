"""``zoo new-plugin NAME``: write a pip-installable plugin package from the templates in ``zoo/templates/plugin``.

The generated package registers one working text-to-image method through the ``distill_zoo`` entry-point group
(exactly how the built-in methods are registered), with a sampler, a trainer, a torch-free config and a test that
runs :func:`zoo.testing.check_method`.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from zoo.errors import InputError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# template file -> path in the generated project ({package} and {name} are substituted)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{package}/__init__.py",
    "config.py.tmpl": "{package}/config.py",
    "sampler.py.tmpl": "{package}/sampler.py",
    "trainer.py.tmpl": "{package}/trainer.py",
    "tests/test_plugin.py.tmpl": "tests/test_{name}.py",
}


def scaffold_plugin(name: str, parent: str | Path = ".", title: str | None = None) -> Path:
    """Create ``<parent>/zoo-<name>/`` and return its path; refuses to overwrite an existing folder."""
    name = name.strip().lower().replace("-", "_")
    if not _NAME_RE.match(name):
        raise InputError(f"Invalid plugin name {name!r}: use lowercase letters, digits and underscores, "
                         f"starting with a letter (e.g. my_method)")
    dist_name = f"zoo-{name.replace('_', '-')}"
    target = Path(parent) / dist_name
    if target.exists():
        raise InputError(f"{target} already exists; choose another name or remove the folder")
    values = {
        "name": name,
        "package": f"zoo_{name}",
        "dist_name": dist_name,
        "class_name": "".join(part.capitalize() for part in name.split("_")),
        "title": title or name.replace("_", " ").title(),
    }
    templates = resources.files("zoo") / "templates" / "plugin"
    for template_name, relative in _FILES.items():
        text = Template((templates / template_name).read_text()).substitute(values)
        path = target / relative.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target
