"""Write the UI-format (drag-into-the-browser) twin of every API-format workflow in nodes/workflows/, and read one back.

ComfyUI has two workflow formats: the API format (``{id: {class_type, inputs}}``, what ``/prompt`` executes and
"Load (API)" opens) and the UI format (LiteGraph: ``nodes`` with positions, sockets and ``widgets_values``, plus
``links``), which the browser saves and loads by drag and drop. The frontend turns a UI graph into the API format
by reading each node's widget values in its schema's input order, skipping the "control after generate" entry that
follows a seed widget, and the links into ``[node, slot]`` inputs; :func:`to_api` does the same, so a test can check
that every UI file gives back its API file.

Schemas come from the pack's ``nodes/object_info.json`` and, for core nodes, ``tests/data/comfyui_core_object_info.json``
(taken from ComfyUI 0.3.64).

    python scripts/workflow_ui.py            # nodes/workflows/*.json -> nodes/workflows/ui/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "nodes" / "workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def load_schemas() -> dict:
    schemas = json.loads((ROOT / "tests" / "data" / "comfyui_core_object_info.json").read_text())
    schemas.update(json.loads((ROOT / "nodes" / "object_info.json").read_text()))
    return {name: value for name, value in schemas.items() if not name.startswith("_")}


def _inputs(schema: dict) -> list[tuple[str, list]]:
    spec = schema["input"]
    return [*spec.get("required", {}).items(), *spec.get("optional", {}).items()]


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(spec: list) -> bool:
    return len(spec) > 1 and isinstance(spec[1], dict) and bool(spec[1].get("control_after_generate"))


def _order(api: dict) -> list[str]:
    """Node ids in dependency order (a node after every node it reads from)."""
    done: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in done:
            return
        for value in api[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in api:
                visit(str(value[0]))
        done.append(node_id)

    for node_id in api:
        visit(node_id)
    return done


def to_ui(api: dict, schemas: dict) -> dict:
    """The UI-format graph of an API-format workflow (nodes laid out in columns by dependency depth)."""
    order = _order(api)
    depth: dict[str, int] = {}
    for node_id in order:
        parents = [str(v[0]) for v in api[node_id]["inputs"].values() if isinstance(v, list) and len(v) == 2]
        depth[node_id] = 1 + max((depth[p] for p in parents), default=-1)
    rows: dict[int, int] = {}
    nodes, links = [], []
    outputs: dict[tuple[str, int], list[int]] = {}
    for index, node_id in enumerate(order):
        node = api[node_id]
        schema = schemas[node["class_type"]]
        inputs, widgets = [], []
        for name, spec in _inputs(schema):
            value = node["inputs"].get(name)
            linked = isinstance(value, list) and len(value) == 2 and str(value[0]) in api
            entry = {"name": name, "type": "COMBO" if isinstance(spec[0], list) else spec[0], "link": None}
            if linked:
                links.append([len(links) + 1, int(value[0]), int(value[1]), int(node_id), len(inputs),
                              schemas[api[str(value[0])]["class_type"]]["output"][int(value[1])]])
                entry["link"] = len(links)
                outputs.setdefault((str(value[0]), int(value[1])), []).append(len(links))
            if _is_widget(spec):
                entry["widget"] = {"name": name}
                widgets.append(value if not linked else spec[1].get("default") if len(spec) > 1 else None)
                if _has_control(spec):
                    widgets.append("fixed")
                if linked:
                    inputs.append(entry)
            else:
                inputs.append(entry)
        row = rows.get(depth[node_id], 0)
        rows[depth[node_id]] = row + 1
        nodes.append({"id": int(node_id), "type": node["class_type"], "pos": [40 + 380 * depth[node_id], 40 + 300 * row],
                      "size": [340, 120 + 26 * len(widgets)], "flags": {}, "order": index, "mode": 0,
                      "inputs": inputs, "outputs": [], "properties": {"Node name for S&R": node["class_type"]},
                      "widgets_values": widgets,
                      **({"title": node["_meta"]["title"]} if node.get("_meta", {}).get("title") else {})})
    for entry in nodes:
        schema = schemas[entry["type"]]
        entry["outputs"] = [{"name": name, "type": kind, "links": outputs.get((str(entry["id"]), slot), []),
                             "slot_index": slot}
                            for slot, (kind, name) in enumerate(zip(schema["output"], schema.get("output_name",
                                                                                                  schema["output"])))]
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"distill-zoo": "generated by scripts/workflow_ui.py"},
            "version": 0.4}


def to_api(ui: dict, schemas: dict) -> dict:
    """The API-format workflow the frontend sends for a UI-format graph (see the module docstring)."""
    by_link = {link[0]: link for link in ui["links"]}
    api = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        schema = schemas[node["type"]]
        linked = {entry["name"]: by_link[entry["link"]] for entry in node["inputs"] if entry.get("link")}
        values = iter(node.get("widgets_values", []))
        inputs = {}
        for name, spec in _inputs(schema):
            if _is_widget(spec):
                value = next(values)
                if _has_control(spec):
                    next(values)
                if name not in linked:
                    inputs[name] = value
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                **({"_meta": {"title": node["title"]}} if node.get("title") else {})}
    return api


def main(argv: list[str]) -> int:
    schemas = load_schemas()
    out = WORKFLOWS / "ui"
    out.mkdir(exist_ok=True)
    for path in sorted(WORKFLOWS.glob("*.json")):
        ui = to_ui(json.loads(path.read_text()), schemas)
        (out / path.name).write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote {(out / path.name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
