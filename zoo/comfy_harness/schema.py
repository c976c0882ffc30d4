"""Check V1 node class definitions and build the ``/object_info`` schema ComfyUI serves for them.

:func:`check_node_class` lists every problem ComfyUI would trip over later (at load, in the frontend or while
executing): a missing ``required`` section, malformed input specs, INT/FLOAT defaults outside min/max, empty combos,
RETURN_NAMES/OUTPUT_IS_LIST lengths that do not match RETURN_TYPES, a FUNCTION that does not exist or cannot take the
declared inputs, a VALIDATE_INPUTS whose parameters have no defaults (ComfyUI omits linked inputs when calling it).

:func:`node_info` mirrors upstream ``server.py::node_info`` field for field.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

SECTIONS = ("required", "optional", "hidden")
HIDDEN_VALUES = {"UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO", "DYNPROMPT", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def _is_combo(input_type: Any) -> bool:
    return isinstance(input_type, (list, tuple))


def _check_input(node_id: str, section: str, name: str, spec: Any) -> list[str]:
    where = f"{node_id}.{section}.{name}"
    if not isinstance(spec, (tuple, list)) or not 1 <= len(spec) <= 2:
        return [f"{where}: spec must be a tuple (TYPE,) or (TYPE, options), got {spec!r}"]
    input_type = spec[0]
    options = spec[1] if len(spec) == 2 else {}
    problems = []
    if not isinstance(options, dict):
        return [f"{where}: options must be a dict, got {type(options).__name__}"]
    if _is_combo(input_type):
        if not input_type:
            problems.append(f"{where}: combo has no options")
        elif not all(isinstance(v, (str, int, float)) for v in input_type):
            problems.append(f"{where}: combo options must be strings or numbers")
        if "default" in options and options["default"] not in input_type:
            problems.append(f"{where}: combo default {options['default']!r} is not one of its options")
        return problems
    if not isinstance(input_type, str) or not input_type:
        return [f"{where}: type must be a non-empty string or a list of combo options, got {input_type!r}"]
    if input_type in ("INT", "FLOAT"):
        kind = int if input_type == "INT" else (int, float)
        if "default" not in options:
            problems.append(f"{where}: {input_type} input needs a default")
        for key in ("default", "min", "max", "step"):
            if key in options and (not isinstance(options[key], kind) or isinstance(options[key], bool)):
                problems.append(f"{where}: {key}={options[key]!r} is not {input_type}")
        low, high, default = options.get("min", -math.inf), options.get("max", math.inf), options.get("default")
        if low > high:
            problems.append(f"{where}: min {low} > max {high}")
        if isinstance(default, (int, float)) and not low <= default <= high:
            problems.append(f"{where}: default {default} outside [{low}, {high}]")
        if "step" in options and isinstance(options["step"], (int, float)) and options["step"] <= 0:
            problems.append(f"{where}: step must be positive")
    elif input_type == "BOOLEAN":
        if "default" in options and not isinstance(options["default"], bool):
            problems.append(f"{where}: BOOLEAN default must be True or False")
    elif input_type == "STRING":
        if "default" in options and not isinstance(options["default"], str):
            problems.append(f"{where}: STRING default must be a string")
        if "multiline" in options and not isinstance(options["multiline"], bool):
            problems.append(f"{where}: multiline must be a bool")
    return problems


def check_node_class(node_id: str, cls: type, prefix: str | None = None) -> list[str]:
    """Problems with the V1 definition of ``cls`` registered as ``node_id`` (empty list = well-formed)."""
    problems: list[str] = []
    if prefix and not node_id.startswith(prefix):
        problems.append(f"{node_id}: node id must start with {prefix!r}")
    try:
        inputs = cls.INPUT_TYPES()
    except Exception as exc:  # noqa: BLE001
        return [f"{node_id}: INPUT_TYPES() raised {type(exc).__name__}: {exc}"]
    if not isinstance(inputs, dict) or "required" not in inputs:
        return [f"{node_id}: INPUT_TYPES() must return a dict with a 'required' section"]
    for section in inputs:
        if section not in SECTIONS:
            problems.append(f"{node_id}: unknown INPUT_TYPES section {section!r} (use {', '.join(SECTIONS)})")
    for section in ("required", "optional"):
        for name, spec in (inputs.get(section) or {}).items():
            problems += _check_input(node_id, section, name, spec)
    for name, value in (inputs.get("hidden") or {}).items():
        if value not in HIDDEN_VALUES:
            problems.append(f"{node_id}.hidden.{name}: unknown hidden input {value!r}")

    return_types = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(return_types, tuple):
        problems.append(f"{node_id}: RETURN_TYPES must be a tuple (write ('IMAGE',), not ('IMAGE'))")
        return_types = ()
    for key in ("RETURN_NAMES", "OUTPUT_IS_LIST", "OUTPUT_TOOLTIPS"):
        value = getattr(cls, key, None)
        if value is not None and len(value) != len(return_types):
            problems.append(f"{node_id}: {key} has {len(value)} entries for {len(return_types)} RETURN_TYPES")
    if not isinstance(getattr(cls, "CATEGORY", None), str):
        problems.append(f"{node_id}: CATEGORY must be a string")
    if not return_types and getattr(cls, "OUTPUT_NODE", False) is not True:
        problems.append(f"{node_id}: a node without outputs must set OUTPUT_NODE = True or it never runs")

    function_name = getattr(cls, "FUNCTION", None)
    function = getattr(cls, function_name, None) if isinstance(function_name, str) else None
    if not callable(function):
        problems.append(f"{node_id}: FUNCTION {function_name!r} is not a method of the class")
    else:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # drop self
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters)
        declared = {name for section in SECTIONS for name in (inputs.get(section) or {})}
        needed = {p.name for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                       p.KEYWORD_ONLY)}
        always = set(inputs["required"]) | set(inputs.get("hidden") or {})
        for name in sorted(needed - always):
            problems.append(f"{node_id}: {function_name}() needs {name!r} but it is not a required or hidden input")
        if not has_kwargs:
            accepted = {p.name for p in parameters}
            for name in sorted(declared - accepted):
                problems.append(f"{node_id}: input {name!r} is not a parameter of {function_name}()")

    validator = getattr(cls, "VALIDATE_INPUTS", None)
    if validator is not None:
        parameters = list(inspect.signature(validator).parameters.values())
        declared = {name for section in ("required", "optional") for name in (inputs.get(section) or {})}
        for p in parameters:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.name != "input_types" and p.name not in declared:
                problems.append(f"{node_id}: VALIDATE_INPUTS parameter {p.name!r} is not an input")
            if p.default is p.empty:
                problems.append(f"{node_id}: VALIDATE_INPUTS parameter {p.name!r} needs a default "
                                f"(ComfyUI leaves linked inputs out of the call)")
    return problems


def node_info(node_id: str, cls: type, display_name: str | None = None) -> dict[str, Any]:
    """The ``/object_info`` entry of one node (upstream ``server.py::node_info``)."""
    inputs = cls.INPUT_TYPES()
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": {section: list(values.keys()) for section, values in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": node_id,
        "display_name": display_name or node_id,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    if getattr(cls, "DEPRECATED", False):
        info["deprecated"] = True
    if getattr(cls, "EXPERIMENTAL", False):
        info["experimental"] = True
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def object_info(mappings: dict[str, type], display_names: dict[str, str] | None = None) -> dict[str, Any]:
    """``/object_info`` for ``mappings`` (JSON-ready: tuples become lists, as in ComfyUI's HTTP response)."""
    display_names = display_names or {}
    return {node_id: _jsonable(node_info(node_id, cls, display_names.get(node_id)))
            for node_id, cls in sorted(mappings.items())}
