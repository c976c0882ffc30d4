"""pluggy hook specifications of distill-zoo.

A plugin is a module (or object) exposed in the ``distill_zoo`` entry-point group that implements
:func:`register_methods`::

    from zoo.sdk import hookimpl, MethodSpec

    @hookimpl
    def register_methods(register):
        register(MethodSpec(name="my_method", ...))

Built-in methods in ``plugins/`` use exactly this mechanism.
"""

import pluggy

PROJECT_NAME = "distill_zoo"
ENTRY_POINT_GROUP = "distill_zoo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_methods(register):
    """Register distillation methods by calling ``register(MethodSpec(...))`` once per method.

    Must not import torch, diffusers or other heavy packages: trainers and samplers are given as lazy
    ``"module:attr"`` strings that are imported only when used.
    """
