"""Run a validated API-format prompt in-process, as ComfyUI's ``PromptExecutor`` does.

* Only nodes that feed a valid output node run, in dependency order (each node after its inputs).
* Links ``[node_id, slot]`` are replaced by the upstream node's output; hidden inputs (``UNIQUE_ID``, ``PROMPT``,
  ``EXTRA_PNGINFO``) are filled in; the node class is instantiated and its ``FUNCTION`` called with keyword arguments.
* Outputs are cached across runs of one :class:`Executor` by input signature (plus ``IS_CHANGED``; a NaN result
  always re-runs), like ComfyUI's output cache, so an unchanged loader node is not executed twice.
* A node that raises stops the run with ComfyUI's ``execution_error`` message (``exception_message``,
  ``exception_type``, ``traceback``, ``node_id``, ``node_type``); the executor itself never raises for node errors.
  ``InterruptProcessingException`` gives ``execution_interrupted``.
* Every output is checked against the tensor contracts of its declared type (IMAGE ``[B, H, W, 3]`` float32 in 0..1,
  MASK ``[B, H, W]``, LATENT ``{"samples": [B, C, h, w], ...}``, INT/FLOAT/STRING/BOOLEAN Python scalars); a
  violation is reported as an ``execution_error`` of type ``contract_violation``.
"""

from __future__ import annotations

import copy
import math
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from zoo.comfy_harness.validation import ValidationResult, validate_prompt


@dataclass
class ExecutionOutcome:
    status: str
    """``success``, ``validation_failed``, ``execution_error`` or ``execution_interrupted``."""
    outputs: dict[str, tuple] = field(default_factory=dict)
    ui: dict[str, dict] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    validation: ValidationResult | None = None
    error: dict | None = None
    progress: list[tuple[str | None, int, int]] = field(default_factory=list)
    """``(node_id, value, total)`` for every ``comfy.utils.ProgressBar`` update during the run."""

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def describe(self) -> str:
        if self.status == "validation_failed" and self.validation is not None:
            return "validation failed:\n" + "\n".join(self.validation.messages())
        if self.error is not None:
            return f"{self.status} in {self.error.get('node_type')} #{self.error.get('node_id')}: " \
                   f"{self.error.get('exception_message')}"
        return self.status


def contract_problem(declared: Any, value: Any) -> str | None:
    """Why ``value`` breaks the layout contract of ComfyUI type ``declared`` (None when it is fine)."""
    import torch

    if declared == "IMAGE":
        if not isinstance(value, torch.Tensor):
            return f"IMAGE must be a torch.Tensor, got {type(value).__name__}"
        if value.ndim != 4 or value.shape[-1] != 3:
            return f"IMAGE must be [B, H, W, 3] (channels last), got shape {list(value.shape)}"
        if value.dtype != torch.float32:
            return f"IMAGE must be float32, got {value.dtype}"
        if value.numel() and (not torch.isfinite(value).all() or value.min() < 0 or value.max() > 1):
            return "IMAGE values must be finite and within [0, 1]"
    elif declared == "MASK":
        if not isinstance(value, torch.Tensor) or value.ndim not in (2, 3):
            return "MASK must be a [B, H, W] (or [H, W]) tensor"
    elif declared == "LATENT":
        if not isinstance(value, dict) or not isinstance(value.get("samples"), torch.Tensor):
            return "LATENT must be a dict with a 'samples' tensor"
        if value["samples"].ndim != 4:
            return f"LATENT samples must be [B, C, h, w], got shape {list(value['samples'].shape)}"
    elif declared == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"INT output must be an int, got {type(value).__name__}"
    elif declared == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"FLOAT output must be a float, got {type(value).__name__}"
    elif declared == "STRING":
        if not isinstance(value, str):
            return f"STRING output must be a str, got {type(value).__name__}"
    elif declared == "BOOLEAN":
        if not isinstance(value, bool):
            return f"BOOLEAN output must be a bool, got {type(value).__name__}"
    return None


class ContractViolation(Exception):
    """A node returned something that breaks ComfyUI's contracts (wrong arity, wrong tensor layout)."""


class Executor:
    """Executes prompts against ``mappings``; keeps an output cache between :meth:`execute` calls."""

    def __init__(self, mappings: dict[str, type], check_contracts: bool = True) -> None:
        self.mappings = mappings
        self.check_contracts = check_contracts
        self._cache: dict[str, tuple[Any, tuple, dict | None]] = {}

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- helpers --------------------------------------------------------------------------------------------------
    def _order(self, prompt: dict, outputs: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(node_id: str) -> None:
            if node_id in seen:
                return
            seen.add(node_id)
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list) and len(value) == 2:
                    visit(str(value[0]))
            order.append(node_id)

        for output in outputs:
            visit(output)
        return order

    def _signature(self, prompt: dict, node_id: str, memo: dict[str, Any]) -> Any:
        if node_id in memo:
            return memo[node_id]
        node = prompt[node_id]
        cls = self.mappings[node["class_type"]]
        parts = []
        for name, value in sorted(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2:
                parts.append((name, ("link", self._signature(prompt, str(value[0]), memo), value[1])))
            else:
                parts.append((name, repr(value)))
        changed = None
        if hasattr(cls, "IS_CHANGED"):
            widgets = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
            try:
                changed = cls.IS_CHANGED(**widgets)
            except Exception:  # noqa: BLE001 - ComfyUI treats a failing IS_CHANGED as "changed"
                changed = float("nan")
            if isinstance(changed, float) and math.isnan(changed):
                changed = object()  # never equal: always re-run
        if getattr(cls, "NOT_IDEMPOTENT", False):
            changed = object()
        signature = (node["class_type"], tuple(parts), changed)  # a fresh object() never compares equal
        memo[node_id] = signature
        return signature

    def _hidden(self, cls: type, node_id: str, prompt: dict, extra_data: dict) -> dict[str, Any]:
        values = {"UNIQUE_ID": node_id, "PROMPT": prompt, "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
                  "DYNPROMPT": None}
        hidden = (cls.INPUT_TYPES().get("hidden") or {})
        return {name: values.get(kind) for name, kind in hidden.items()}

    # -- the run --------------------------------------------------------------------------------------------------
    def execute(self, prompt: dict, extra_data: dict | None = None) -> ExecutionOutcome:
        """Validate and run ``prompt`` (not modified; a coerced copy is used)."""
        extra_data = extra_data or {}
        prompt = {str(k): v for k, v in copy.deepcopy(prompt).items()}
        validation = validate_prompt(prompt, self.mappings)
        outcome = ExecutionOutcome(status="success", validation=validation)
        if not validation.valid:
            outcome.status = "validation_failed"
            outcome.error = validation.error
            return outcome

        comfy_utils = sys.modules.get("comfy.utils")
        server = sys.modules.get("server")
        current: dict[str, str | None] = {"node": None}

        def hook(value, total, preview=None, node_id=None, **_):
            outcome.progress.append((node_id or current["node"], value, total))

        if comfy_utils is not None:
            comfy_utils.set_progress_bar_global_hook(hook)
        memo: dict[str, Any] = {}
        results: dict[str, tuple] = {}
        try:
            for node_id in self._order(prompt, validation.good_outputs):
                node = prompt[node_id]
                cls = self.mappings[node["class_type"]]
                signature = self._signature(prompt, node_id, memo)
                cached = self._cache.get(node_id)
                if cached is not None and cached[0] == signature:
                    results[node_id] = cached[1]
                    if cached[2] is not None:
                        outcome.ui[node_id] = cached[2]
                    outcome.cached.append(node_id)
                    continue
                current["node"] = node_id
                if server is not None:
                    server.PromptServer.instance.last_node_id = node_id
                kwargs = {}
                for name, value in node["inputs"].items():
                    if isinstance(value, list) and len(value) == 2:
                        kwargs[name] = results[str(value[0])][value[1]]
                    else:
                        kwargs[name] = value
                kwargs.update(self._hidden(cls, node_id, prompt, extra_data))
                try:
                    instance = cls()
                    returned = getattr(instance, cls.FUNCTION)(**kwargs)
                    output, ui = self._normalise(cls, returned)
                except Exception as exc:  # noqa: BLE001 - reported like ComfyUI, never raised
                    interrupted = type(exc).__name__ == "InterruptProcessingException"
                    outcome.status = "execution_interrupted" if interrupted else "execution_error"
                    outcome.error = {
                        "type": "contract_violation" if isinstance(exc, ContractViolation) else "exception",
                        "node_id": node_id, "node_type": node["class_type"], "executed": list(outcome.executed),
                        "exception_message": str(exc), "exception_type": f"{type(exc).__module__}.{type(exc).__name__}",
                        "traceback": traceback.format_tb(exc.__traceback__),
                        "current_inputs": {k: repr(v)[:200] for k, v in kwargs.items()},
                    }
                    self._cache.pop(node_id, None)
                    break
                results[node_id] = output
                if ui is not None:
                    outcome.ui[node_id] = ui
                self._cache[node_id] = (signature, output, ui)
                outcome.executed.append(node_id)
        finally:
            if comfy_utils is not None:
                comfy_utils.set_progress_bar_global_hook(None)
        outcome.outputs = results
        return outcome

    def _normalise(self, cls: type, returned: Any) -> tuple[tuple, dict | None]:
        ui = None
        if isinstance(returned, dict):
            ui = returned.get("ui")
            returned = returned.get("result", ())
        if not isinstance(returned, (tuple, list)):
            raise ContractViolation(f"{cls.__name__}.{cls.FUNCTION}() must return a tuple (e.g. (image,)), "
                                    f"got {type(returned).__name__}")
        output = tuple(returned)
        if len(output) != len(cls.RETURN_TYPES):
            raise ContractViolation(f"{cls.__name__}.{cls.FUNCTION}() returned {len(output)} values for "
                                    f"{len(cls.RETURN_TYPES)} RETURN_TYPES")
        if self.check_contracts:
            for index, (declared, value) in enumerate(zip(cls.RETURN_TYPES, output)):
                problem = contract_problem(declared, value)
                if problem:
                    raise ContractViolation(f"output {index} ({declared}) of {cls.__name__}: {problem}")
        return output, ui
