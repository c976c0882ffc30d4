"""Small helpers shared by CLI commands."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from zoo.errors import InputError


def parse_value(text: str):
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, anything else stays a string (YAML scalar rules)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_key_values(items) -> dict:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"Option {item!r} is not of the form key=value")
        result[key.strip().replace("-", "_")] = parse_value(value)
    return result


@contextlib.contextmanager
def tqdm_progress(description: str) -> Iterator:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (silent when stderr is not a terminal
    unless ``ZOO_PROGRESS=1``)."""
    import os

    from tqdm.auto import tqdm

    disable = not (sys.stderr.isatty() or os.environ.get("ZOO_PROGRESS") == "1")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="step", disable=disable, leave=False)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
