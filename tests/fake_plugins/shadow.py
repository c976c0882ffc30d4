"""A third-party plugin whose entry point is named like a built-in one (``swiftbrush``): rejected whole."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="shadow", task="text-to-image", summary="Shadow.", paper=Paper("Shadow"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
