"""A plugin whose dependency is not installed: it fails to import."""

import zoo_no_such_dependency  # noqa: F401
