"""The gradio app (``zoo serve``): every registered method listed, handlers, and a headless launch on 127.0.0.1
called through gradio_client."""

import pytest
import torch

gr = pytest.importorskip("gradio", reason="the app needs the 'ui' extra (gradio)")

from zoo.app import NO_PRESET, DemoHandlers, build_demo  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from zoo.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


def _dropdown(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_every_registered_method_is_in_the_app():
    from zoo.registry import list_methods

    demo = build_demo()
    t2i = [choice[0] for choice in _dropdown(demo, "t2i-method").choices]
    sr = [choice[0] for choice in _dropdown(demo, "sr-method").choices]
    assert t2i == ["auto", *[s.name for s in list_methods(task="text-to-image")]]
    assert sr == ["auto", *[s.name for s in list_methods(task="super-resolution")]]
    handlers = DemoHandlers()
    for spec in list_methods(task="text-to-image"):
        assert handlers.presets_for(spec.name) == [NO_PRESET, *[p.name for p in spec.presets]]


def test_generate_handler_saves_parameters_with_the_images(tiny_model):
    from zoo.loading import load_sampler
    from zoo.sampling import read_metadata

    torch.set_num_threads(1)
    handlers = DemoHandlers()
    calls = []
    gallery, info, paths = handlers.generate("auto", str(tiny_model), NO_PRESET, "a red circle", "", 2, -1, 11, 2,
                                             0, 0, -1, "cpu", progress=lambda value, desc=None: calls.append(value))
    assert len(gallery) == len(paths) == 2 and calls == [(1, 2), (2, 2)]
    meta = read_metadata(paths[1])
    assert meta["seed"] == 11 and meta["steps"] == 2 and meta["batch_index"] == 1 and meta["nfe"] == 4
    assert meta["model"] == str(tiny_model) and f"{meta['nfe']} network evaluations" in info
    # the same pixels as the sampler called directly (what zoo run does)
    import numpy as np
    from PIL import Image

    _, sampler = load_sampler(None, str(tiny_model), device="cpu", dtype="fp32")
    direct = sampler("a red circle", steps=2, seed=11, batch_size=2)
    assert np.array_equal(np.asarray(Image.open(paths[1]).convert("RGB")), np.asarray(direct.images[1]))
    again = handlers.cache.get("text-to-image", "auto", str(tiny_model), None, "cpu")
    assert again[1] is handlers.cache.get("text-to-image", "auto", str(tiny_model), None, "cpu")[1]


def test_handler_errors_are_one_line(tmp_path):
    from zoo.errors import ZooError

    handlers = DemoHandlers()
    with pytest.raises(ZooError, match="does not exist") as info:
        handlers.generate("auto", str(tmp_path / "missing"), NO_PRESET, "x", "", 1, -1, 0, 1, 0, 0, -1, "cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ZooError, match="Enter a prompt"):
        handlers.generate("auto", "", NO_PRESET, "  ", "", 1, -1, 0, 1, 0, 0, -1, "cpu")


def test_headless_launch_generate_through_gradio_client(tiny_model, tmp_path):
    from gradio_client import Client

    from zoo.sampling import read_metadata

    from zoo.paths import ModelRoots

    torch.set_num_threads(1)
    demo = build_demo(roots=ModelRoots([tiny_model.parent]))  # the operator's --model-root
    try:
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, share=False)
        assert url.startswith("http://127.0.0.1:")
        client = Client(url, download_files=str(tmp_path / "downloads"), verbose=False)
        gallery, info, files = client.predict("auto", str(tiny_model), NO_PRESET, "a blue square", "", 2, -1, 5, 1,
                                              0, 0, -1, "cpu", api_name="/generate")
        assert len(gallery) == 1 and "network evaluations" in info
        from PIL import Image

        assert Image.open(gallery[0]["image"]).size == (16, 16)
        meta = read_metadata(files[0])
        assert meta["prompt"] == "a blue square" and meta["seed"] == 5 and meta["steps"] == 2
        with pytest.raises(Exception, match="does not exist"):  # inside the operator's roots: said plainly
            client.predict("auto", str(tiny_model.parent / "missing"), NO_PRESET, "x", "", 1, -1, 0, 1, 0, 0, -1,
                           "cpu", api_name="/generate")
        for outside in (str(tmp_path / "missing"), "/etc"):  # outside: one answer, whether it exists or not
            with pytest.raises(Exception, match="is not available on this server"):
                client.predict("auto", outside, NO_PRESET, "x", "", 1, -1, 0, 1, 0, 0, -1, "cpu",
                               api_name="/generate")
    finally:
        demo.close()


def test_headless_upscale_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    from test_nodes import make_nearest_sr
    from zoo.registry import get_registry, set_registry
    from zoo.sampling import read_metadata
    from zoo.spec import MethodSpec, Paper

    registry = get_registry().copy()
    registry.add(MethodSpec(name="fake_sr", task="super-resolution", summary="Nearest-neighbour stand-in.",
                            paper=Paper("none"), sampler=make_nearest_sr, trainer=make_nearest_sr,
                            config="fake_plugins.targets:AlphaConfig", plugin="tests"))
    set_registry(registry)
    source = tmp_path / "in.png"
    Image.new("RGB", (6, 4), (10, 200, 30)).save(source)
    demo = build_demo(registry)
    try:
        assert "fake_sr" in [c[0] for c in _dropdown(demo, "sr-method").choices]
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, share=False)
        client = Client(url, download_files=str(tmp_path / "downloads"), verbose=False)
        image, info, file = client.predict("fake_sr", "", handle_file(str(source)), 3, 0, 1, 0, "cpu",
                                           api_name="/upscale")
        assert Image.open(image).size == (18, 12) and Image.open(image).getpixel((17, 11)) == (10, 200, 30)
        assert "6x4 → 18x12" in info and read_metadata(file)["input_size"] == [6, 4]
    finally:
        demo.close()
        set_registry(None)


def _by_id(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _compare_handler(demo):
    """The function behind the Compare tab's button, checked to be wired to the tab's components."""
    button = _by_id(demo, "compare-run")
    fn = next(f for f in demo.fns.values() if f.api_name == "compare")
    assert (button._id, "click") in [tuple(t) for t in fn.targets]
    assert [b.elem_id for b in fn.inputs] == ["compare-prompt", "compare-seed", "compare-device"]
    assert [b.elem_id for b in fn.outputs] == ["compare-gallery", "compare-info"]
    return fn.fn


def test_compare_tab_runs_every_method_on_one_prompt_and_seed():
    import re

    from PIL import Image

    from zoo.app import COMPARE_TEACHER, compare_methods
    from zoo.registry import list_methods
    from zoo.sampling import read_metadata

    torch.set_num_threads(1)
    demo = build_demo()
    handler = _compare_handler(demo)
    methods = compare_methods()
    assert methods == [COMPARE_TEACHER, *[s.name for s in list_methods(task="text-to-image") if s.default_model]]
    gallery, info = handler("a red circle", 7, "cpu")
    assert [caption.split(" · ")[0] for _, caption in gallery] == methods  # one image per method, in order
    for path, caption in gallery:
        nfe = int(re.fullmatch(r"\S+ · (\d+) NFE · \d+ ms/image", caption).group(1))
        meta = read_metadata(path)
        assert meta["nfe"] == nfe and meta["seed"] == 7 and meta["prompt"] == "a red circle"
        assert Image.open(path).size == (32, 32)
    captions = dict((c.split(" · ")[0], c) for _, c in gallery)
    assert " · 50 NFE · " in captions[COMPARE_TEACHER]  # the teacher's 25 steps with CFG
    if "swiftbrush" in captions:
        assert " · 1 NFE · " in captions["swiftbrush"]
    assert "seed 7" in info and info.count("\n| ") == len(methods) + 1
    # the same prompt and seed again: the cached samplers give the same pixels
    again, _ = handler("a red circle", 7, "cpu")
    import numpy as np

    assert np.array_equal(np.asarray(Image.open(again[-1][0])), np.asarray(Image.open(gallery[-1][0])))
    with pytest.raises(gr.Error, match="Enter a prompt"):
        handler("  ", 7, "cpu")
    with pytest.raises(gr.Error, match="out of range"):
        handler("a red circle", -1, "cpu")


def _exploding_sampler(model, **kwargs):
    raise RuntimeError("/srv/secret/path: boom")


def test_compare_tab_shows_a_failing_method_as_a_caption(tmp_path):
    from zoo.registry import MethodRegistry, set_registry
    from zoo.spec import MethodSpec, Paper

    torch.set_num_threads(1)
    registry = MethodRegistry()
    common = dict(task="text-to-image", summary="Broken stand-in.", paper=Paper("none"), trainer=_exploding_sampler,
                  config="fake_plugins.targets:AlphaConfig", plugin="tests")
    registry.add(MethodSpec(name="missing_model", sampler=_exploding_sampler,
                            default_model=str(tmp_path / "missing"), **common))
    registry.add(MethodSpec(name="exploding", sampler=_exploding_sampler,
                            default_model="pkg:zoo.testbed/weights/teacher", **common))
    registry.add(MethodSpec(name="no_default", sampler=_exploding_sampler, **common))
    set_registry(registry)
    try:
        gallery, info = _compare_handler(build_demo(registry))("a blue square", 3, "cpu")
    finally:
        set_registry(None)
    captions = {caption.split(" · ")[0]: caption for _, caption in gallery}
    assert len(gallery) == 3 and gallery[0][1].startswith("teacher · 50 NFE")  # no_default has no model to compare
    assert captions["missing_model"].startswith("missing_model · failed: ")
    assert "does not exist" in captions["missing_model"]
    assert captions["exploding"] == "exploding · failed (the details are in the server's log)"
    assert "secret" not in info and info.count("failed") == 2
