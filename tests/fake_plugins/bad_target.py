"""A plugin with a lazy target that is not of the form 'package.module:attr': rejected whole at registration."""

from zoo.sdk import MethodSpec, Paper, hookimpl


@hookimpl
def register_methods(register):
    register(MethodSpec(name="bad_target_ok", task="text-to-image", summary="Fine.", paper=Paper("Ok"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins.targets:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
    register(MethodSpec(name="bad_target", task="text-to-image", summary="Bad.", paper=Paper("Bad"),
                        sampler="fake_plugins.targets:sampler", trainer="fake_plugins/targets.py:trainer",
                        config="fake_plugins.targets:AlphaConfig"))
