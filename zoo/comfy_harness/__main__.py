"""Command line of the harness.

``python -m zoo.comfy_harness object-info nodes -o nodes/object_info.json``
    write the pack's ``/object_info`` schema (what ComfyUI's ``GET /object_info`` returns for these nodes);
``python -m zoo.comfy_harness check nodes``
    list node definition problems (exit 1 when there are any);
``python -m zoo.comfy_harness run nodes nodes/workflows/txt2img.json``
    validate and execute an API-format workflow; prints the outcome and where images were saved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.comfy_harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("object-info", help="write the pack's /object_info JSON")
    info.add_argument("pack", type=Path)
    info.add_argument("-o", "--out", type=Path, default=None, help="output file (default: stdout)")
    check = sub.add_parser("check", help="check node definitions")
    check.add_argument("pack", type=Path)
    check.add_argument("--prefix", default=None)
    run = sub.add_parser("run", help="execute an API-format workflow")
    run.add_argument("pack", type=Path)
    run.add_argument("workflow", type=Path)
    run.add_argument("--base-dir", type=Path, default=Path("comfy-harness-output"))
    args = parser.parse_args(argv)

    from zoo.comfy_harness.harness import ComfyHarness

    if args.command == "object-info":
        with ComfyHarness(args.pack) as comfy:
            text = json.dumps(comfy.object_info(), indent=2, sort_keys=True) + "\n"
        if args.out is None:
            sys.stdout.write(text)
        else:
            args.out.write_text(text)
            print(f"wrote {args.out}", file=sys.stderr)
        return 0
    if args.command == "check":
        with ComfyHarness(args.pack) as comfy:
            problems = comfy.check(args.prefix)
        print("\n".join(problems) or "no problems")
        return 1 if problems else 0
    with ComfyHarness(args.pack, base_dir=args.base_dir) as comfy:
        outcome = comfy.run(json.loads(args.workflow.read_text()))
        print(outcome.describe())
        for node_id, ui in outcome.ui.items():
            for image in ui.get("images", []):
                print(f"node {node_id}: {comfy.base_dir / image['type'] / image['subfolder'] / image['filename']}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
