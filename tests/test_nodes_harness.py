"""The in-repo ComfyUI harness itself: loading by path, definition checks, ComfyUI's validation rules, execution.

A small fake pack written per test exercises each rule, so these tests do not depend on the real pack's nodes.
"""

import sys
import textwrap

import pytest

from zoo.comfy_harness import ComfyHarness, PackLoadError, check_node_class, validate_node_input

FAKE_PACK = '''
from .fk_helpers import double

class FakeNumber:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 10}),
                             "mode": (["plain", "double"],)}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "fake"
    calls = 0
    def run(self, value, mode):
        type(self).calls += 1
        return (double(value) if mode == "double" else value,)

class FakeImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 8, "min": 1, "max": 64}),
                             "layout": (["BHWC", "BCHW"],)}}
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "fake"
    def run(self, size, layout):
        import torch
        import comfy.utils
        bar = comfy.utils.ProgressBar(2)
        bar.update(1); bar.update(1)
        shape = (1, size, size, 3) if layout == "BHWC" else (1, 3, size, size)
        return (torch.full(shape, 0.5),)

class FakeCheck:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 8, "min": 8, "max": 64}), "number": ("INT,FLOAT",)}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "fake"
    @classmethod
    def VALIDATE_INPUTS(cls, width=8):
        return True if width % 8 == 0 else f"width={width} is not a multiple of 8"
    def run(self, width, number):
        return (width + int(number),)

class FakeFail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"number": ("INT",)}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "fake"
    def run(self, number):
        raise ValueError(f"cannot handle {number}")

class FakeSink:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"anything": ("*",)}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "fake"
    def run(self, anything, unique_id=None):
        return {"ui": {"seen": [repr(anything)[:40], unique_id]}}

class FakeOverride:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "fake"
    def run(self):
        return {}

NODE_CLASS_MAPPINGS = {"FakeNumber": FakeNumber, "FakeImage": FakeImage, "FakeCheck": FakeCheck,
                       "FakeFail": FakeFail, "FakeSink": FakeSink, "SaveImage": FakeOverride}
NODE_DISPLAY_NAME_MAPPINGS = {"FakeNumber": "Fake number"}
'''


@pytest.fixture
def fake_pack(tmp_path):
    pack = tmp_path / "custom_nodes" / "fake.pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(FAKE_PACK)
    (pack / "fk_helpers.py").write_text("def double(x):\n    return 2 * x\n")
    return pack


@pytest.fixture
def comfy(fake_pack, tmp_path):
    with ComfyHarness(fake_pack, base_dir=tmp_path / "comfy") as harness:
        yield harness


def _sink(node, slot=0):
    return {"class_type": "FakeSink", "inputs": {"anything": [node, slot]}}


def test_pack_loads_by_path_like_comfyui(comfy, fake_pack):
    assert comfy.pack.api == "v1"
    assert set(comfy.pack.node_class_mappings) == {"FakeNumber", "FakeImage", "FakeCheck", "FakeFail", "FakeSink"}
    assert comfy.pack.skipped == ["SaveImage"]  # a pack cannot override a built-in node
    assert comfy.mappings["SaveImage"].__module__ == "zoo.comfy_harness.builtin_nodes"
    assert comfy.pack.sys_module_name == str(fake_pack).replace(".", "_x_")
    assert comfy.mappings["FakeNumber"].RELATIVE_PYTHON_MODULE == "custom_nodes.fake.pack"
    assert "fk_helpers" not in sys.modules  # relative import, not a top-level module


def test_stubs_and_pack_modules_exist_only_inside_the_harness(fake_pack, tmp_path):
    before = {name: sys.modules.get(name) for name in ("folder_paths", "comfy.utils", "nodes", "server")}
    with ComfyHarness(fake_pack, base_dir=tmp_path / "c") as comfy:
        import folder_paths

        assert folder_paths.get_output_directory() == str(tmp_path / "c" / "output")
        name = comfy.pack.sys_module_name
        assert name in sys.modules
    assert name not in sys.modules and f"{name}.fk_helpers" not in sys.modules
    assert {n: sys.modules.get(n) for n in before} == before


def test_broken_and_shadowing_packs_are_reported(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PackLoadError, match="Cannot import .*broken.*RuntimeError: boom"):
        ComfyHarness(broken).__enter__()
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("import sys, types\nsys.modules['nodes'] = types.ModuleType('nodes')\n"
                                        "NODE_CLASS_MAPPINGS = {}\n")
    with pytest.raises(PackLoadError, match="replaced ComfyUI's own module"):
        ComfyHarness(shadow).__enter__()
    assert "folder_paths" not in sys.modules


def test_definition_checks_find_common_mistakes():
    class Bad:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"n": ("INT", {"default": 20, "min": 0, "max": 10}), "c": ([],),
                                 "f": ("FLOAT", {"min": 0.0})}}
        RETURN_TYPES = ("IMAGE")  # a string, not a tuple
        RETURN_NAMES = ("a", "b")
        FUNCTION = "missing"

        @classmethod
        def VALIDATE_INPUTS(cls, n):
            return True

    problems = "\n".join(check_node_class("Bad", Bad, prefix="DistillZoo"))
    for expected in ("must start with 'DistillZoo'", "n: default 20 outside [0, 10]", "c: combo has no options",
                     "f: FLOAT input needs a default", "RETURN_TYPES must be a tuple", "CATEGORY must be a string",
                     "FUNCTION 'missing' is not a method", "VALIDATE_INPUTS parameter 'n' needs a default"):
        assert expected in problems, expected
    assert check_node_class("Bad", type("NoRequired", (), {"INPUT_TYPES": classmethod(lambda c: {})})) == [
        "Bad: INPUT_TYPES() must return a dict with a 'required' section"]


def test_link_type_rules_match_comfyui():
    assert validate_node_input("INT", "INT")
    assert validate_node_input("INT", "INT,FLOAT") and validate_node_input("*", "IMAGE")
    assert not validate_node_input("IMAGE", "LATENT")
    assert not validate_node_input("INT,STRING", "INT,FLOAT", strict=True)
    assert validate_node_input("INT,STRING", "INT,FLOAT")


@pytest.mark.parametrize("inputs, kind", [
    ({"mode": "plain"}, "required_input_missing"),
    ({"value": -1, "mode": "plain"}, "value_smaller_than_min"),
    ({"value": 11, "mode": "plain"}, "value_bigger_than_max"),
    ({"value": 3, "mode": "triple"}, "value_not_in_list"),
    ({"value": "three", "mode": "plain"}, "invalid_input_type"),
])
def test_widget_validation_errors(comfy, inputs, kind):
    outcome = comfy.run({"1": {"class_type": "FakeNumber", "inputs": inputs}, "2": _sink("1")})
    assert outcome.status == "validation_failed" and outcome.executed == []
    assert [e["type"] for e in outcome.validation.node_errors["1"]["errors"]] == [kind]
    assert outcome.validation.node_errors["1"]["dependent_outputs"] == ["2"]


def test_link_validation_and_custom_validators(comfy):
    image = {"class_type": "FakeImage", "inputs": {"size": 4, "layout": "BHWC"}}
    mismatch = comfy.run({"1": image, "2": {"class_type": "FakeFail", "inputs": {"number": ["1", 0]}}, "3": _sink("2")})
    assert mismatch.validation.node_errors["2"]["errors"][0]["type"] == "return_type_mismatch"
    bad_link = comfy.run({"1": image, "2": {"class_type": "FakeFail", "inputs": {"number": ["1", 0, 1]}},
                          "3": _sink("2")})
    assert bad_link.validation.node_errors["2"]["errors"][0]["type"] == "bad_linked_input"
    # VALIDATE_INPUTS names width: its message is reported and ComfyUI's own min check is skipped for width
    number = {"class_type": "FakeNumber", "inputs": {"value": 2, "mode": "plain"}}
    odd = comfy.run({"1": number, "2": {"class_type": "FakeCheck", "inputs": {"width": 12, "number": ["1", 0]}},
                     "3": _sink("2")})
    errors = odd.validation.node_errors["2"]["errors"]
    assert errors == [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                       "details": "width - width=12 is not a multiple of 8", "extra_info": {"input_name": "width"}}]
    below_min = comfy.run({"1": number, "2": {"class_type": "FakeCheck", "inputs": {"width": 0, "number": ["1", 0]}},
                           "3": _sink("2")})
    assert below_min.ok and below_min.outputs["2"] == (2,)
    assert comfy.run({"1": number}).validation.error["type"] == "prompt_no_outputs"
    assert comfy.run({"1": {"class_type": "Nope", "inputs": {}}, "2": _sink("1")}).validation.error["type"] == \
        "invalid_prompt"


def test_execution_order_links_hidden_inputs_and_cache(comfy):
    comfy.mappings["FakeNumber"].calls = 0
    prompt = {"9": _sink("5"), "5": {"class_type": "FakeCheck", "inputs": {"width": 16, "number": ["1", 0]}},
              "1": {"class_type": "FakeNumber", "inputs": {"value": "3", "mode": "double"}},
              "7": {"class_type": "FakeNumber", "inputs": {"value": 1, "mode": "plain"}}}  # feeds no output
    outcome = comfy.run(prompt)
    assert outcome.ok, outcome.describe()
    assert outcome.executed == ["1", "5", "9"]
    assert outcome.outputs["1"] == (6,) and outcome.outputs["5"] == (22,)
    assert outcome.ui["9"] == {"seen": ["22", "9"]}
    again = comfy.run(prompt)
    assert again.executed == [] and again.cached == ["1", "5", "9"] and comfy.mappings["FakeNumber"].calls == 1
    prompt["1"]["inputs"]["value"] = 4
    assert comfy.run(prompt).executed == ["1", "5", "9"]


def test_node_exceptions_and_contract_violations_are_reported_not_raised(comfy):
    number = {"class_type": "FakeNumber", "inputs": {"value": 5, "mode": "plain"}}
    failed = comfy.run({"1": number, "2": {"class_type": "FakeFail", "inputs": {"number": ["1", 0]}},
                        "3": _sink("2")})
    assert failed.status == "execution_error"
    assert failed.error["node_id"] == "2" and failed.error["exception_message"] == "cannot handle 5"
    assert failed.executed == ["1"]
    channels_first = comfy.run({"1": {"class_type": "FakeImage", "inputs": {"size": 4, "layout": "BCHW"}},
                                "2": _sink("1")})
    assert channels_first.error["type"] == "contract_violation"
    assert "IMAGE must be [B, H, W, 3] (channels last), got shape [1, 3, 4, 4]" in channels_first.error[
        "exception_message"]
    good = comfy.run({"1": {"class_type": "FakeImage", "inputs": {"size": 4, "layout": "BHWC"}}, "2": _sink("1")})
    assert good.ok and good.progress == [("1", 1, 2), ("1", 2, 2)]


def test_builtin_load_and_save_image_round_trip(comfy):
    from PIL import Image

    Image.new("RGB", (5, 3), (255, 0, 0)).save(comfy.input_dir / "red.png")
    outcome = comfy.run({"1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
                         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}})
    assert outcome.ok, outcome.describe()
    image, mask = outcome.outputs["1"]
    assert list(image.shape) == [1, 3, 5, 3] and image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert list(mask.shape) == [1, 3, 5] and float(mask.max()) == 0.0
    saved = outcome.ui["2"]["images"][0]
    assert (comfy.output_dir / saved["filename"]).is_file()
    missing = comfy.run({"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}, "2": _sink("1")})
    assert missing.validation.node_errors["1"]["errors"][0]["type"] == "value_not_in_list"
