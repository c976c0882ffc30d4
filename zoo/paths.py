"""Confinement: every file name that a manifest, preset, config or client names stays inside the folder it belongs to.

A model folder's ``zoo.json`` names files (``"lora": "lora.safetensors"``) and other models (``"base_model":
"org/name"``). Such names come from whoever published the model, so they are checked before anything is opened:

* a **file name** must be relative, without ``..``, backslashes or NUL bytes, and must still lie inside the model's
  root after symlinks are followed (:func:`confine`). The root of a local or package folder is the folder itself;
  the root of a hub snapshot is the repository's cache folder (``models--org--name``), whose ``snapshots/<commit>/``
  files are links into its ``blobs/``;
* a **model reference** in a downloaded (hub or package) model must itself be a hub id or a ``pkg:`` folder, never a
  path on this machine (:func:`zoo.hub.manifest_model_ref`).

Anything else is refused with one line (:class:`~zoo.errors.UnsafePathError`) before the file is opened. The
message is the same whether or not the named file exists, so a refusal tells nothing about the machine.

This module never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from zoo.errors import UnsafePathError


def relative_name(name: object, *, what: str, source: str) -> str:
    """``name`` as a clean ``/``-separated relative path, or :class:`UnsafePathError` when it is empty, absolute,
    climbs with ``..`` or holds a backslash, a drive letter or a NUL byte.

    Args:
        name: the file name as written in the manifest, config or request.
        what: what the name is for, e.g. ``"LoRA file"`` (used in the message).
        source: where the name was written, e.g. ``"zoo.json of hf-hub:org/repo"`` (used in the message).
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError(f"The {what} named in {source} is empty or not a string; name a file inside the model "
                              f"folder")
    text = name.strip()
    parts = PurePosixPath(text).parts
    if ("\\" in text or "\0" in text or text.startswith(("/", "~")) or (len(text) > 1 and text[1] == ":")
            or any(part == ".." for part in parts)):
        raise UnsafePathError(f"The {what} {name!r} named in {source} points outside the model folder; only files "
                              f"inside it (no absolute paths, no '..') or hub references are allowed")
    return "/".join(part for part in parts if part != ".")


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` lies in ``root`` (or is ``root``) after both are resolved, symlinks included."""
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == top or top in real.parents


def confine(root: str | os.PathLike, name: object, *, what: str, source: str,
            folder: str | os.PathLike | None = None) -> Path:
    """``folder / name`` (``folder`` defaults to ``root``) after checking that it stays inside ``root``.

    The name is checked as text first (:func:`relative_name`), then the joined path is resolved, following every
    symlink, and must lie inside ``root``. The file need not exist; whether it does is the caller's business.

    Raises:
        UnsafePathError: the name is absolute, climbs out with ``..``, or resolves (through a link) outside ``root``.
    """
    relative = relative_name(name, what=what, source=source)
    candidate = Path(folder if folder is not None else root) / relative
    if not inside(candidate, root):
        raise UnsafePathError(f"The {what} {name!r} named in {source} points outside the model folder (through a "
                              f"link); only files inside it or hub references are allowed")
    return candidate


MODEL_ROOTS_ENV = "ZOO_MODEL_ROOTS"
"""Extra folders (``os.pathsep``-separated) a server's clients may load local models from."""


class ModelRoots:
    """Where the clients of a server (``zoo serve``, a ComfyUI reachable by others) may load models from: hub ids
    (downloaded into the hub cache), ``pkg:`` models shipped inside installed packages, and local folders or files
    inside the given roots. Everything else is refused with one line that is the same whether or not the path
    exists, so a client learns nothing about the machine.
    """

    def __init__(self, folders=()) -> None:
        self.folders = [Path(os.path.realpath(os.path.expanduser(os.fspath(f)))) for f in folders]

    @classmethod
    def for_server(cls, extra=()) -> "ModelRoots":
        """The hub cache, ``$ZOO_MODEL_ROOTS`` and ``extra`` (e.g. ``zoo serve --model-root``)."""
        from zoo.hub import hub_cache_dir

        env = [part for part in os.environ.get(MODEL_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
        return cls([hub_cache_dir(), *env, *extra])

    def check(self, ref: str | None) -> str | None:
        """``ref`` when a client may load it (empty: the method's default model), else :class:`UnsafePathError`."""
        from zoo.errors import InputError
        from zoo.hub import parse_ref

        if ref is None or not str(ref).strip():
            return ref
        try:
            kind = parse_ref(str(ref)).kind
        except InputError:
            kind = "local"  # malformed or a missing folder: answered like any other refused path
        if kind != "local" or any(inside(os.path.expanduser(str(ref).strip()), root) for root in self.folders):
            return ref
        raise UnsafePathError(f"Model {str(ref).strip()!r} is not available on this server: use a hub id (org/name), "
                              f"a pkg: model, or a model in the server's model folders (the operator adds folders "
                              f"with --model-root or {MODEL_ROOTS_ENV})")
