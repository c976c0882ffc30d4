"""Errors raised by distill-zoo.

Every error a user can cause is a :class:`ZooError`. Its message is one line that names the problem and the fix; the
CLI prints it as ``Error: <message>`` and exits with status 1, and the ComfyUI nodes and the gradio app show the same
text. Raise the most specific subclass; its docstring says who raises it.
"""


class ZooError(Exception):
    """Base class of every user-facing error in distill-zoo."""


class UnknownMethodError(ZooError, KeyError):
    """Raised by the registry when a method name or alias is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateMethodError(ZooError):
    """Raised by the registry when two plugins register the same method name or alias."""


class PluginError(ZooError):
    """Raised when a plugin is malformed (bad spec, lazy target that does not resolve)."""


class ConfigError(ZooError):
    """Raised by :mod:`zoo.config` for an unknown key, a wrong type or an unreadable config file."""


class HubError(ZooError):
    """Base class of the errors raised by :mod:`zoo.hub`."""


class OfflineNotCachedError(HubError):
    """Raised when offline mode is on and the requested model is not in the local cache."""


class RepoNotFoundError(HubError):
    """Raised when the hub has no repository with the requested id (or it is private)."""


class RevisionNotFoundError(HubError):
    """Raised when the repository exists but the requested branch, tag or commit does not."""


class FileMissingError(HubError):
    """Raised when a repository or folder lacks a file the method needs."""


class HubConnectionError(HubError):
    """Raised when the hub endpoint cannot be reached (no network, a wrong ``HF_ENDPOINT``, a closed port)."""


class PublishError(HubError):
    """Raised by :mod:`zoo.publish` when an upload fails: no token, a refused token, no write access to the name,
    a conflict, or a server without the hub's upload API."""


class WeightsError(ZooError):
    """Raised when weights are corrupt, truncated, unsafe (pickled code) or do not fit the model they are loaded into."""


class InputError(ZooError, ValueError):
    """Raised for bad user input to a sampler or trainer: wrong image size or mode, steps out of range, and so on."""


class UnsafePathError(InputError):
    """Raised when a file name or model reference in a manifest, preset, config or request points outside the
    folders it must stay in (an absolute path, ``..``, a link leading out, a local path in a downloaded model)."""


class TrainingError(ZooError):
    """Raised by the training runtime: non-finite loss, out of memory, disk full, no checkpoint to resume from."""


class MissingExtraError(ZooError, ImportError):
    """Raised when an optional dependency is needed; the message ends with the ``pip install`` line."""


def require_extra(module: str, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming the ``distill-zoo[extra]`` to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the '{module}' package ({exc}); install it with: pip install 'distill-zoo[{extra}]'"
        ) from exc
