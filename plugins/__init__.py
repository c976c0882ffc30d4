"""Built-in distill-zoo methods, one package per method.

Installed as ``zoo_plugins``; each method is declared in the ``distill_zoo`` entry-point group of ``pyproject.toml``,
the same way a third-party plugin declares its own. Nothing in ``zoo/`` imports these packages by name.
"""
