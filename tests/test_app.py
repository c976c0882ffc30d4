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
