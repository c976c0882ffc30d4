"""Rewrite the model cards (README.md) of the models shipped in this repository from their zoo.json, config.yaml and
metrics.json, with the card format of ``zoo.train.export.model_card`` (valid hub metadata, a usage line that runs).

Usage::

    python scripts/refresh_model_cards.py            # every shipped default model of an installed method
    python scripts/refresh_model_cards.py --check    # exit 1 when a card is not what the current format writes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def shipped_models() -> dict[str, Path]:
    """``{ref: folder}`` of every registered method's ``pkg:`` default model that has a training config."""
    from zoo.hub import resolve_model
    from zoo.registry import list_methods

    found = {}
    for spec in list_methods():
        ref = spec.default_model
        if ref and ref.startswith("pkg:"):
            folder = resolve_model(ref).path
            if (folder / "config.yaml").is_file() and (folder / "zoo.json").is_file():
                found[ref] = Path(folder)
    return found


def card_for(folder: Path, ref: str) -> str:
    from zoo.train.export import model_card

    manifest = json.loads((folder / "zoo.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    return model_card(manifest, (folder / "config.yaml").read_text(), metrics, model_ref=ref)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Only report cards that differ; change nothing.")
    args = parser.parse_args()
    stale = []
    for ref, folder in shipped_models().items():
        text = card_for(folder, ref)
        current = (folder / "README.md").read_text() if (folder / "README.md").is_file() else None
        if current != text:
            stale.append(ref)
            if not args.check:
                (folder / "README.md").write_text(text)
                print(f"rewrote {folder / 'README.md'}")
    if args.check and stale:
        print(f"stale model cards: {', '.join(stale)}; run python scripts/refresh_model_cards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
