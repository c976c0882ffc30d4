from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    # 'gamma' is new but 'a1' is already alpha_one's alias: the whole plugin must be rejected.
    register(MethodSpec(name="gamma", task="text-to-image", summary="Gamma.", paper=Paper("Gamma"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
    register(MethodSpec(name="a1", task="text-to-image", summary="Clash.", paper=Paper("Clash"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
