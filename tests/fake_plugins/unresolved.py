"""A plugin whose targets are well formed but do not resolve: registered, one-line errors on first use."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="unresolved", task="text-to-image", summary="Targets that do not resolve.",
                        paper=Paper("Unresolved"), sampler="fake_plugins.no_such_module:build_sampler",
                        trainer="fake_plugins.targets:no_such_trainer",
                        config="fake_plugins.targets:AlphaConfig.no_such_attr"))
