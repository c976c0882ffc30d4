"""Package discovery for distill-zoo.

The core lives in ``zoo/``; the built-in method plugins live in ``plugins/`` and are installed under the import name
``zoo_plugins`` (a bare ``plugins`` top-level module would clash with other projects). Everything else is declared in
``pyproject.toml``.
"""

from setuptools import find_packages, setup

core_packages = find_packages(include=["zoo", "zoo.*"])
plugin_packages = ["zoo_plugins"] + [f"zoo_plugins.{name}" for name in find_packages("plugins")]

setup(packages=core_packages + plugin_packages, package_dir={"zoo_plugins": "plugins"})
