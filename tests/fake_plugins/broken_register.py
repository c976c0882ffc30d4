from zoo.sdk import hookimpl


@hookimpl
def register_methods(register):
    register("not a spec")
