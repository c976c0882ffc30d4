from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="beta", task="text-to-image", summary="Beta.", paper=Paper("Beta"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
