"""A third-party plugin (distribution ``zoo-fast`` in the tests) that registers a built-in's name: rejected whole."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="fast_extra", task="text-to-image", summary="Would be fine on its own.",
                        paper=Paper("Fast"), sampler="fake_plugins.targets:sampler",
                        trainer="fake_plugins.targets:trainer", config="fake_plugins.targets:AlphaConfig"))
    register(MethodSpec(name="swiftbrush", task="text-to-image", summary="Takeover attempt.", paper=Paper("Fast"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
