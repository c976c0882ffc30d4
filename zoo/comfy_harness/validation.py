"""ComfyUI's validation of an API-format prompt (upstream ``execution.py::validate_prompt`` / ``validate_inputs``).

Rules reproduced, with ComfyUI's error ``type`` strings:

* every node needs a known ``class_type`` (``invalid_prompt``) and the prompt needs an output node
  (``prompt_no_outputs``); only nodes that feed an output node are validated;
* a required input that is absent → ``required_input_missing``;
* a link must be ``[node_id, slot]`` (``bad_linked_input``) whose output type fits the input type
  (``return_type_mismatch``; types are comma-separated sets, ``*`` matches anything; skipped when VALIDATE_INPUTS
  takes ``input_types``);
* widget values are coerced (``INT`` → ``int()``, ``FLOAT`` → ``float()``, ``STRING`` → ``str()``, ``BOOLEAN`` →
  ``bool()``; ``{"__value__": v}`` is unwrapped) — failure → ``invalid_input_type``;
* unless the input is a parameter of the node's ``VALIDATE_INPUTS``: ``min`` → ``value_smaller_than_min``, ``max`` →
  ``value_bigger_than_max``, combo membership → ``value_not_in_list``;
* ``VALIDATE_INPUTS`` (a classmethod, called with the widget values it names; linked inputs are left out) returning
  anything but ``True`` → ``custom_validation_failed`` with its message.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ValidationResult:
    valid: bool
    error: dict | None = None
    good_outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, dict] = field(default_factory=dict)

    def messages(self) -> list[str]:
        """One readable line per problem: ``<class_type> #<id>: <message>: <details>``."""
        lines = []
        if self.error is not None and not self.node_errors:
            lines.append(f"{self.error['message']}: {self.error.get('details', '')}".rstrip(": "))
        for node_id, entry in sorted(self.node_errors.items()):
            for reason in entry["errors"]:
                lines.append(f"{entry['class_type']} #{node_id}: {reason['message']}: {reason['details']}")
        return lines


def validate_node_input(received_type: Any, input_type: Any, strict: bool = False) -> bool:
    """Whether an output of ``received_type`` may feed an input of ``input_type`` (upstream semantics)."""
    if received_type == input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    wanted = {t.strip() for t in input_type.split(",")}
    if "*" in received or "*" in wanted:
        return True
    return received <= wanted if strict else bool(received & wanted)


def input_info(class_inputs: dict, name: str) -> tuple[Any, str | None, dict]:
    """``(type, section, options)`` of input ``name``."""
    for section in ("required", "optional"):
        spec = (class_inputs.get(section) or {}).get(name)
        if spec is not None:
            return spec[0], section, (spec[1] if len(spec) > 1 else {})
    hidden = (class_inputs.get("hidden") or {}).get(name)
    if hidden is not None:
        return hidden, "hidden", {}
    return None, None, {}


def _reason(kind: str, message: str, details: str, **extra: Any) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def validator_parameters(cls: type) -> tuple[list[str], bool]:
    """Parameter names of ``cls.VALIDATE_INPUTS`` and whether it takes ``**kwargs`` (([], False) without one)."""
    function = getattr(cls, "VALIDATE_INPUTS", None)
    if function is None:
        return [], False
    spec = inspect.getfullargspec(function)
    names = [a for a in spec.args if a not in ("cls", "self", "s")] + list(spec.kwonlyargs)
    return names, spec.varkw is not None


def _validate_node(prompt: dict, node_id: str, mappings: dict[str, type], validated: dict[str, tuple]) -> tuple:
    if node_id in validated:
        return validated[node_id]
    validated[node_id] = (False, [], node_id)  # guards against cycles
    node = prompt[node_id]
    inputs = node.setdefault("inputs", {})
    cls = mappings[node["class_type"]]
    class_inputs = cls.INPUT_TYPES()
    valid_inputs = list((class_inputs.get("required") or {})) + list((class_inputs.get("optional") or {}))
    validator_inputs, validator_kwargs = validator_parameters(cls)
    errors: list[dict] = []
    valid = True
    received_types: dict[str, Any] = {}

    for name in valid_inputs:
        input_type, section, options = input_info(class_inputs, name)
        if name not in inputs:
            if section == "required":
                errors.append(_reason("required_input_missing", "Required input is missing", name, input_name=name))
            continue
        value = inputs[name]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_reason("bad_linked_input", "Bad linked input, must be a length-2 list of "
                                      "[node_id, slot_index]", name, input_name=name, received_value=value))
                continue
            source_id, slot = str(value[0]), value[1]
            if source_id not in prompt:
                errors.append(_reason("bad_linked_input", "Linked node does not exist in the prompt",
                                      f"{name}: node {source_id}", input_name=name, received_value=value))
                continue
            source_cls = mappings.get(prompt[source_id].get("class_type"))
            if source_cls is None:
                valid = False
                continue
            outputs = source_cls.RETURN_TYPES
            if not isinstance(slot, int) or not 0 <= slot < len(outputs):
                errors.append(_reason("bad_linked_input", "Linked output slot does not exist",
                                      f"{name}: slot {slot} of {prompt[source_id]['class_type']}",
                                      input_name=name, received_value=value))
                continue
            received = outputs[slot]
            received_types[name] = received
            if "input_types" not in validator_inputs and not validate_node_input(received, input_type):
                errors.append(_reason("return_type_mismatch", "Return type mismatch between linked nodes",
                                      f"{name}, {received} != {input_type}", input_name=name,
                                      received_type=received, linked_node=value))
                continue
            upstream = _validate_node(prompt, source_id, mappings, validated)
            if upstream[0] is False:
                valid = False
            continue
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            if input_type == "INT":
                value = int(value)
            elif input_type == "FLOAT":
                value = float(value)
            elif input_type == "STRING":
                value = str(value)
            elif input_type == "BOOLEAN":
                value = bool(value)
            inputs[name] = value
        except Exception as exc:  # noqa: BLE001
            errors.append(_reason("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                  f"{name}, {value}, {exc}", input_name=name, received_value=value))
            continue
        if name in validator_inputs:
            continue
        if "min" in options and value < options["min"]:
            errors.append(_reason("value_smaller_than_min", f"Value {value} smaller than min of {options['min']}",
                                  name, input_name=name, received_value=value))
            continue
        if "max" in options and value > options["max"]:
            errors.append(_reason("value_bigger_than_max", f"Value {value} bigger than max of {options['max']}",
                                  name, input_name=name, received_value=value))
            continue
        if isinstance(input_type, (list, tuple)) and value not in input_type:
            listed = f"(list of length {len(input_type)})" if len(input_type) > 20 else str(list(input_type))
            errors.append(_reason("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                                  input_name=name, received_value=value))
            continue

    if validator_inputs or validator_kwargs:
        widget_values = {k: v for k, v in inputs.items() if k in valid_inputs and not isinstance(v, list)}
        call = {k: v for k, v in widget_values.items() if validator_kwargs or k in validator_inputs}
        if "input_types" in validator_inputs:
            call["input_types"] = received_types
        try:
            answer = cls.VALIDATE_INPUTS(**call)
        except Exception as exc:  # noqa: BLE001
            answer = f"{type(exc).__name__}: {exc}"
        if answer is not True:
            for name in call:
                details = name if answer is False else f"{name} - {answer}"
                errors.append(_reason("custom_validation_failed", "Custom validation failed for node", details,
                                      input_name=name))

    result = (not errors and valid, errors, node_id)
    validated[node_id] = result
    return result


def validate_prompt(prompt: dict, mappings: dict[str, type], partial_execution_list: list[str] | None = None
                    ) -> ValidationResult:
    """Validate ``prompt`` (coercing its widget values in place, as ComfyUI does)."""
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return ValidationResult(False, _reason("invalid_prompt", "Cannot execute because a node is missing the "
                                                   "class_type property.", f"Node ID '#{node_id}'"))
        cls = mappings.get(node["class_type"])
        if cls is None:
            return ValidationResult(False, _reason("invalid_prompt", f"Cannot execute because node "
                                                   f"{node['class_type']} does not exist.", f"Node ID '#{node_id}'"))
        if getattr(cls, "OUTPUT_NODE", False) is True and (partial_execution_list is None
                                                           or node_id in partial_execution_list):
            outputs.append(node_id)
    if not outputs:
        return ValidationResult(False, _reason("prompt_no_outputs", "Prompt has no outputs", ""))

    validated: dict[str, tuple] = {}
    good_outputs, node_errors, failures = [], {}, []
    for output in sorted(outputs):
        try:
            ok, reasons, _ = _validate_node(prompt, output, mappings, validated)
        except Exception as exc:  # noqa: BLE001
            ok, reasons = False, [_reason("exception_during_validation", "Exception when validating node", str(exc))]
            validated[output] = (False, reasons, output)
        if ok:
            good_outputs.append(output)
            continue
        failures.extend(reasons)
        for node_id, (node_ok, node_reasons, _) in validated.items():
            if not node_ok and node_reasons:
                entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(output)
    if not good_outputs:
        details = "\n".join(f"{r['message']}: {r['details']}" for r in failures)
        return ValidationResult(False, _reason("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                               details), [], node_errors)
    return ValidationResult(True, None, good_outputs, node_errors)
