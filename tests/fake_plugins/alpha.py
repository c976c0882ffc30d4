from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="alpha_one", aliases=("a1",), task="text-to-image", summary="First fake method.",
                        paper=Paper("Alpha", arxiv="0000.00001"), sampler="fake_plugins.targets:sampler",
                        trainer="fake_plugins.targets:trainer", config="fake_plugins.targets:AlphaConfig"))
    register(MethodSpec(name="alpha_two", task="super-resolution", summary="Second fake method.",
                        paper=Paper("Alpha 2"), sampler="fake_plugins.targets:sampler",
                        trainer="fake_plugins.targets:trainer", config="fake_plugins.targets:AlphaConfig"))
