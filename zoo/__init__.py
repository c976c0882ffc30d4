"""distill-zoo: distilled generative image models behind one plugin registry.

The public API for users is small::

    from zoo import list_methods, get_method
    spec = get_method("imdn")

Plugin authors import everything they need from :mod:`zoo.sdk`. Importing this package never imports torch.
"""

from zoo.registry import get_method, list_methods

__all__ = ["get_method", "list_methods", "__version__"]
__version__ = "0.1.0"
