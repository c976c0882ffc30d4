"""Model references: parse them, resolve them to a local folder, read and write the ``zoo.json`` manifest.

A reference (ref) names where a model's files live. Four spellings are accepted:

==================================  ===================================================================================
``hf-hub:org/name@revision``        a Hugging Face hub repository at a branch, tag or commit (timm's convention)
``hf-hub:org/name``                 the same at the default branch (``main``)
``org/name`` / ``org/name@rev``     the same without the prefix
``./dir``, ``/abs/dir``, ``~/dir``  a local folder (any existing directory is also taken as a local folder; so is a
                                    path starting with ``.``, ``/`` or ``~``, which must then exist)
``pkg:python.package/sub/dir``      a folder shipped inside an installed Python package (``importlib.resources``),
                                    e.g. ``pkg:zoo.testbed/weights/teacher``
==================================  ===================================================================================

:func:`resolve_model` turns a ref into a :class:`zoo.spec.ResolvedModel` (local path, resolved commit, manifest).
Hub refs go through ``huggingface_hub.snapshot_download`` into the standard cache (``$HF_HUB_CACHE``, default
``$HF_HOME/hub``), so anything downloaded with ``hf download`` or ``from_pretrained`` is reused. Only safe file types
are fetched by default (:data:`DEFAULT_ALLOW_PATTERNS`); pickled weights (``.bin``, ``.pth``, ``.pt``, ``.ckpt``) only
with ``allow_pickle=True``.

Hub settings are read from the environment **at call time** (``HF_ENDPOINT``, ``HF_HUB_CACHE``/``HF_HOME``,
``HF_HUB_OFFLINE``) and passed to huggingface_hub explicitly, because huggingface_hub itself reads them once, when it
is imported. Failures are mapped to the one-line errors of :mod:`zoo.errors`:

* :class:`~zoo.errors.OfflineNotCachedError` -- offline mode is on and the files are not (all) in the cache;
* :class:`~zoo.errors.RepoNotFoundError` -- no such repository (or it is private);
* :class:`~zoo.errors.RevisionNotFoundError` -- the repository exists, the branch/tag/commit does not;
* :class:`~zoo.errors.FileMissingError` -- a requested file is not in the repository or folder;
* :class:`~zoo.errors.HubConnectionError` -- the endpoint cannot be reached (names ``HF_ENDPOINT``);
* :class:`~zoo.errors.HubError` -- the endpoint answers with an error (names ``HF_ENDPOINT``).

This module never imports torch; huggingface_hub is imported inside the functions that need it.
"""

from __future__ import annotations

import difflib
import glob
import importlib
import importlib.resources
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from zoo.errors import (FileMissingError, HubError, InputError, OfflineNotCachedError, RepoNotFoundError,
                        RevisionNotFoundError, WeightsError)
from zoo.spec import MANIFEST_NAME, TASKS, ResolvedModel

HUB_PREFIX = "hf-hub:"
PACKAGE_PREFIX = "pkg:"
LOCAL_PREFIX = "local-dir:"
"""timm's explicit local-folder prefix, accepted too: ``local-dir:/path/to/model``."""

DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = ("*.safetensors", "*.json", "*.yaml", "*.yml", "*merges.txt", "*vocab.txt",
                                           "*.md")
"""File patterns fetched from a hub repository when the caller names none: weights, configs, the tokenizer's text
files (``merges.txt``, ``vocab.txt``) and the model card; other text files (notes, data dumps) only on request
(``--include``). ``*`` also matches ``/``, so the patterns reach into subfolders."""

PICKLE_PATTERNS: tuple[str, ...] = ("*.bin", "*.pth", "*.pt", "*.ckpt", "*.pkl", "*.pickle")
"""Pickle-based weight formats: they can run code when loaded, so they are fetched only with ``allow_pickle=True``."""

DEFAULT_ENDPOINT = "https://huggingface.co"

_KIND_HUB, _KIND_LOCAL, _KIND_PACKAGE = "hub", "local", "package"
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_PACKAGE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_REF_HELP = "use org/name, hf-hub:org/name@revision, a folder path, or pkg:python.package/sub/dir"


# ---------------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    Attributes:
        repo_id: hub repository id ``org/name`` (hub refs only).
        revision: branch, tag or commit given after ``@`` (hub refs only; None means the default branch).
        kind: ``"hub"``, ``"local"`` or ``"package"``.
        path: the expanded, absolute folder path (local refs only).
        package: the dotted Python package name (package refs only).
        subdir: the folder inside the package, ``/``-separated (package refs only; ``""`` is the package itself).
        text: the reference exactly as given.
    """

    repo_id: str | None
    revision: str | None
    kind: str
    path: Path | None = None
    package: str | None = None
    subdir: str = ""
    text: str = ""

    def __str__(self) -> str:
        if self.kind == _KIND_HUB:
            return f"{HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        if self.kind == _KIND_PACKAGE:
            return f"{PACKAGE_PREFIX}{self.package}" + (f"/{self.subdir}" if self.subdir else "")
        return str(self.path)


def parse_ref(ref: str) -> ModelRef:
    """Parse a model reference (see the module docstring for the accepted spellings).

    Raises:
        InputError: the reference is empty or malformed (message names the problem and the accepted forms).
    """
    if not isinstance(ref, (str, os.PathLike)):
        raise InputError(f"A model reference must be a string, got {type(ref).__name__}; {_REF_HELP}")
    text = os.fspath(ref)
    stripped = text.strip()
    if not stripped:
        raise InputError(f"Empty model reference; {_REF_HELP}")
    if stripped.startswith(HUB_PREFIX):
        return _parse_hub(stripped[len(HUB_PREFIX):], text, explicit=True)
    if stripped.startswith(PACKAGE_PREFIX):
        return _parse_package(stripped[len(PACKAGE_PREFIX):], text)
    if stripped.startswith(LOCAL_PREFIX):
        folder = stripped[len(LOCAL_PREFIX):]
        if not folder:
            raise InputError(f"Model reference {text!r} names no folder; write local-dir:/path/to/model")
        return _local(folder, text)
    if stripped[0] in "./~" or Path(stripped).expanduser().is_dir():
        return _local(stripped, text)
    return _parse_hub(stripped, text, explicit=False)


def _local(folder: str, text: str) -> ModelRef:
    return ModelRef(repo_id=None, revision=None, kind=_KIND_LOCAL,
                    path=Path(folder).expanduser().absolute(), text=text)


def _parse_hub(body: str, text: str, *, explicit: bool) -> ModelRef:
    repo_id, at, revision = body.partition("@")
    if at and not revision:
        raise InputError(f"Model reference {text!r} has an empty revision after '@'; write org/name@branch-tag-or-commit")
    if revision and (any(ch.isspace() for ch in revision) or "@" in revision or ".." in revision):
        raise InputError(f"Model reference {text!r} has an invalid revision {revision!r}; use a branch, tag or commit")
    parts = repo_id.split("/")
    # 1. "org/name"; a bare "name" only with the explicit prefix (legacy hub ids like "gpt2"), since a bare word
    #    without prefix more likely is a mistyped folder.
    valid_shape = len(parts) == 2 or (explicit and len(parts) == 1)
    if (not valid_shape or not all(_REPO_PART_RE.match(p) for p in parts) or "--" in repo_id or ".." in repo_id
            or repo_id.endswith(".git")):
        if explicit:
            raise InputError(f"Model reference {text!r} is not a valid hub id; write hf-hub:org/name or "
                             f"hf-hub:org/name@revision (letters, digits, '-', '_', '.')")
        raise InputError(f"Model reference {text!r} is neither an existing folder nor a hub id; {_REF_HELP}")
    return ModelRef(repo_id=repo_id, revision=revision or None, kind=_KIND_HUB, text=text)


def _parse_package(body: str, text: str) -> ModelRef:
    package, _, subdir = body.partition("/")
    subdir = subdir.strip("/")
    if not package or not _PACKAGE_RE.match(package):
        raise InputError(f"Model reference {text!r} does not name a Python package; "
                         f"write pkg:python.package/sub/dir (e.g. pkg:zoo.testbed/weights/teacher)")
    parts = [p for p in subdir.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\\" in subdir:
        raise InputError(f"Model reference {text!r} must name a folder inside the package without '.', '..' or "
                         f"backslashes; write pkg:{package}/sub/dir")
    return ModelRef(repo_id=None, revision=None, kind=_KIND_PACKAGE, package=package, subdir="/".join(parts),
                    text=text)


# ---------------------------------------------------------------------------------------------------------------------
# Hub settings, read at call time
# ---------------------------------------------------------------------------------------------------------------------
def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_endpoint() -> str:
    """The hub URL: ``$HF_ENDPOINT`` now, else what huggingface_hub read at import, else the public hub."""
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        try:
            from huggingface_hub import constants

            value = constants.ENDPOINT
        except ImportError:  # pragma: no cover - huggingface_hub is a dependency
            value = DEFAULT_ENDPOINT
    return value.rstrip("/")


def hub_cache_dir() -> Path:
    """The hub cache folder: ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub`` (``$XDG_CACHE_HOME`` honoured), read now rather than at import."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, or huggingface_hub is in offline mode."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # pragma: no cover - older huggingface_hub
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return bool(is_offline_mode())


# ---------------------------------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------------------------------
def resolve_model(ref: str, *, allow_patterns: Sequence[str] | None = None, files: Sequence[str] | None = None,
                  revision: str | None = None, allow_pickle: bool = False) -> ResolvedModel:
    """Resolve ``ref`` to a local folder, downloading hub repositories into the standard cache.

    Args:
        ref: a model reference (see :func:`parse_ref`).
        allow_patterns: shell patterns of the hub files to fetch (default :data:`DEFAULT_ALLOW_PATTERNS`, plus
            :data:`PICKLE_PATTERNS` when ``allow_pickle``). The manifest ``zoo.json`` is always fetched.
        files: exact file paths inside the repository or folder that must exist; they are fetched in addition to
            ``allow_patterns`` and a missing one raises :class:`~zoo.errors.FileMissingError`.
        revision: branch, tag or commit; same as ``@revision`` in the ref (giving two different ones is an error).
        allow_pickle: also fetch pickle-based weights (``.bin``, ``.pth``, ``.pt``, ``.ckpt``). Off by default:
            unpickling can run arbitrary code.

    Returns:
        :class:`zoo.spec.ResolvedModel` with the local path, the commit hash (hub refs; None otherwise) and the
        manifest (empty when the folder has no ``zoo.json``).
    """
    return _resolve(ref, allow_patterns, files, revision, allow_pickle, with_manifest=True)


def hf_hub_file(ref: str, filename: str, *, revision: str | None = None, allow_pickle: bool = False) -> Path:
    """Fetch one file of a model (e.g. one of the many LoRAs of a Hyper-SD repository) and return its local path.

    Only that file is downloaded from a hub repository; for local and package refs the file must exist in the folder.
    Errors are those of :func:`resolve_model`.
    """
    resolved = _resolve(ref, (), [filename], revision, allow_pickle, with_manifest=False)
    if resolved.path.is_file():  # a local ref that names the file itself
        return resolved.path
    return resolved.file(filename)


def _resolve(ref: str, allow_patterns: Sequence[str] | None, files: Sequence[str] | None, revision: str | None,
             allow_pickle: bool, *, with_manifest: bool) -> ResolvedModel:
    parsed = parse_ref(ref)
    wanted = _clean_files(files, ref)
    if parsed.kind == _KIND_HUB:
        rev = _merge_revision(parsed, revision)
        return _resolve_hub(parsed, rev, allow_patterns, wanted, allow_pickle, with_manifest)
    if revision is not None:
        raise InputError(f"Revision {revision!r} applies only to hub models, but {ref!r} is a "
                         f"{'package folder' if parsed.kind == _KIND_PACKAGE else 'local folder'}; drop the revision")
    path = _package_folder(parsed) if parsed.kind == _KIND_PACKAGE else _local_folder(parsed)
    _require_files(path, wanted, where=f"folder {path}")
    manifest = read_manifest(path) if with_manifest and path.is_dir() else {}
    return ResolvedModel(path=path, ref=os.fspath(ref), commit=None, manifest=manifest, source=parsed.kind)


def _merge_revision(parsed: ModelRef, revision: str | None) -> str | None:
    if revision is not None and not str(revision).strip():
        raise InputError(f"Empty revision given for {parsed.text!r}; name a branch, tag or commit, or omit it")
    if revision and parsed.revision and revision != parsed.revision:
        raise InputError(f"Model reference {parsed.text!r} pins revision {parsed.revision!r} but revision "
                         f"{revision!r} was also given; give only one")
    return revision or parsed.revision


def _clean_files(files: Iterable[str] | None, ref: str) -> list[str]:
    from zoo.paths import relative_name

    return [relative_name(name, what="file", source=f"the request for {ref}") for name in files or ()]


def _is_pickle(name: str) -> bool:
    return any(Path(name).match(pattern) for pattern in PICKLE_PATTERNS)


def _local_folder(parsed: ModelRef) -> Path:
    path = parsed.path
    assert path is not None
    if not path.exists():
        raise FileMissingError(f"Model folder {path} does not exist; check the path (hub models are written "
                               f"org/name or hf-hub:org/name@revision)")
    return path


def _package_folder(parsed: ModelRef) -> Path:
    package = parsed.package
    assert package is not None
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:  # a parent package is missing or broken
        found, reason = None, f" ({type(exc).__name__}: {exc})".splitlines()[0]
    else:
        reason = ""
    if found is None:
        raise InputError(f"Package {package!r} in model reference {parsed.text!r} is not installed{reason}; "
                         f"install it or fix the package name")
    try:
        root = importlib.resources.files(package)
    except Exception as exc:  # noqa: BLE001 - importing the package failed
        raise InputError(f"Package {package!r} in model reference {parsed.text!r} cannot be imported "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); fix the package"
                         ) from None
    # 1. Regular packages give a pathlib.Path; namespace packages a MultiplexedPath over several folders.
    candidates = [Path(str(root))] if isinstance(root, Path) else [Path(p) for p in getattr(root, "_paths", [])]
    if not candidates and found.submodule_search_locations:
        candidates = [Path(p) for p in found.submodule_search_locations]
    for base in candidates:
        target = base.joinpath(*parsed.subdir.split("/")) if parsed.subdir else base
        if target.exists():
            return target
    where = f"folder {parsed.subdir!r} inside package {package!r}" if parsed.subdir else f"package {package!r}"
    raise FileMissingError(f"The {where} does not exist (model reference {parsed.text!r}); check the path, or "
                           f"reinstall the package so that its data files are included")


def _require_files(path: Path, files: Sequence[str], *, where: str) -> None:
    for name in files:
        if path.is_file():
            if Path(name).name != path.name:
                raise FileMissingError(f"{where} is a file, not a folder containing {name!r}; pass the folder")
            continue
        if not (path / name).is_file():
            raise FileMissingError(f"File {name!r} is not in {where}{_suggest(path, name)}; check the file name")


def _suggest(folder: Path, name: str) -> str:
    if not folder.is_dir():
        return ""
    present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    close = difflib.get_close_matches(name, present, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _download_patterns(allow_patterns: Sequence[str] | None, files: Sequence[str],
                       allow_pickle: bool) -> tuple[list[str], list[str]]:
    """The (allow, ignore) patterns asked for, before the manifest is added."""
    # 1. Base patterns: the caller's, or the safe defaults (+ pickles when allowed).
    if allow_patterns is None:
        patterns = list(DEFAULT_ALLOW_PATTERNS) + (list(PICKLE_PATTERNS) if allow_pickle else [])
    else:
        patterns = [str(p) for p in allow_patterns]
    # 2. Plus the explicitly requested files (escaped: a file name is not a pattern).
    patterns += [glob.escape(name) for name in files]
    # 3. Pickles stay out unless allowed, whatever the patterns say.
    ignore = [] if allow_pickle else list(PICKLE_PATTERNS)
    return list(dict.fromkeys(patterns)), ignore


def _resolve_hub(parsed: ModelRef, revision: str | None, allow_patterns: Sequence[str] | None,
                 files: list[str], allow_pickle: bool, with_manifest: bool) -> ResolvedModel:
    repo_id = parsed.repo_id
    assert repo_id is not None
    label = repo_id + (f"@{revision}" if revision else "")
    pickles = [name for name in files if _is_pickle(name)]
    if pickles and not allow_pickle:
        raise WeightsError(f"{pickles[0]!r} in {label} is a pickle file, which can run code when loaded; pass "
                           f"allow_pickle=True (CLI: --allow-pickle) only if you trust {repo_id}")
    patterns, ignore = _download_patterns(allow_patterns, files, allow_pickle)
    fetch = patterns + ([MANIFEST_NAME] if with_manifest and MANIFEST_NAME not in patterns else [])
    endpoint, cache_dir, offline = hub_endpoint(), hub_cache_dir(), is_offline()

    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import filter_repo_objects

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                                        allow_patterns=fetch, ignore_patterns=ignore or None,
                                        local_files_only=offline))
    except Exception as exc:  # noqa: BLE001 - translated below; anything unknown is re-raised
        includes = patterns if allow_patterns is not None or files else []  # the defaults need no --include
        command = " ".join([f"zoo download {label}", *(f"--include '{p}'" for p in includes),
                            *(["--allow-pickle"] if allow_pickle else [])])
        raise _translate_hub_error(exc, repo_id, revision, endpoint, cache_dir, offline, command) from None

    commit = folder.name if _COMMIT_RE.match(folder.name) else None
    at = f"{repo_id}@{commit[:12] if commit else revision or 'main'}"
    # 1. Something the caller asked for must be there (the manifest alone does not count).
    present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    if not any(True for _ in filter_repo_objects(present, allow_patterns=patterns, ignore_patterns=ignore or None)):
        if files:
            _require_files(folder, files, where=at)
        skipped = "" if allow_pickle else "; pickle weights (.bin/.pth/.ckpt) are skipped unless --allow-pickle"
        raise FileMissingError(f"No file of {at} matches {' '.join(patterns) or '(no pattern)'}{skipped}; name the "
                               f"files to fetch (CLI: --include PATTERN)")
    # 2. Every explicitly requested file must be there.
    _require_files(folder, files, where=at)
    manifest = read_manifest(folder) if with_manifest else {}
    # 3. Snapshot files are links into the repository's blobs/: that repository folder is the confinement root.
    root = folder.parent.parent if folder.parent.name == "snapshots" else folder
    _remove_stale_partial_downloads(root)
    return ResolvedModel(path=folder, ref=parsed.text, commit=commit, manifest=manifest, root=root, source=_KIND_HUB)


STALE_PARTIAL_SECONDS = 3600
"""A ``*.incomplete`` blob untouched this long belongs to a killed download, not to one in progress."""


def _remove_stale_partial_downloads(repo_folder: Path) -> list[Path]:
    """Delete the ``blobs/*.incomplete`` files of ``repo_folder`` that no download has touched for an hour (a killed
    download leaves them; huggingface_hub never removes them). Returns what was removed."""
    import time

    removed = []
    for partial in (repo_folder / "blobs").glob("*.incomplete"):
        try:
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
                partial.unlink()
                removed.append(partial)
        except OSError:  # another process removed or completed it meanwhile
            continue
    return removed


def skipped_pickles(resolved: ResolvedModel) -> list[str]:
    """The pickle weight files of a hub repository that a download without ``allow_pickle`` left out (asks the hub
    for the repository's file list; empty when offline, for local folders, or when it cannot tell)."""
    if resolved.source != _KIND_HUB or is_offline():
        return []
    try:
        from huggingface_hub import HfApi

        repo_id = parse_ref(resolved.ref).repo_id
        names = HfApi(endpoint=hub_endpoint()).list_repo_files(repo_id, revision=resolved.commit)
    except Exception:  # noqa: BLE001 - a hint only
        return []
    return [name for name in names if _is_pickle(name) and not (resolved.path / name).exists()]


def _translate_hub_error(exc: Exception, repo_id: str, revision: str | None, endpoint: str, cache_dir: Path,
                         offline: bool, command: str) -> Exception:
    """Map a huggingface_hub exception to the matching one-line :class:`~zoo.errors.HubError`."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError)
    from huggingface_hub.errors import RevisionNotFoundError as HubRevisionNotFoundError

    label = repo_id + (f"@{revision}" if revision else "")
    rev = revision or "main"
    download_hint = f"run `{command}` while online or unset HF_HUB_OFFLINE"
    if isinstance(exc, GatedRepoError):
        return HubError(f"{repo_id} on {endpoint} is gated; accept its terms on the model page and log in with "
                        f"`hf auth login` (or set HF_TOKEN)")
    if isinstance(exc, HubRevisionNotFoundError):
        return RevisionNotFoundError(f"Revision {rev!r} not found in {repo_id}{_known_revisions(repo_id, endpoint)}; "
                                     f"use an existing branch, tag or commit")
    if isinstance(exc, RepositoryNotFoundError):
        # 1. Some servers (olah) answer "repository not found" for an unknown revision: probe the refs to tell apart.
        known = _known_revisions(repo_id, endpoint) if revision else ""
        if known:
            return RevisionNotFoundError(f"Revision {rev!r} not found in {repo_id}{known}; use an existing branch, "
                                         f"tag or commit")
        return RepoNotFoundError(f"Repository {repo_id!r} not found on {endpoint} (or it is private); check the id, "
                                 f"log in with `hf auth login` for private repos, or check HF_ENDPOINT")
    if isinstance(exc, LocalEntryNotFoundError):
        cause = exc.__cause__ or exc.__context__
        if offline or isinstance(cause, OfflineModeIsEnabled):
            incomplete = "not completely" if type(exc).__name__ == "IncompleteSnapshotError" else "not"
            return OfflineNotCachedError(f"{label} is {incomplete} in the local cache ({cache_dir}) and offline "
                                         f"mode is on; {download_hint}")
        if isinstance(cause, RemoteEntryNotFoundError):  # the tree of an unknown commit (olah answers 404)
            return RevisionNotFoundError(f"Revision {rev!r} not found in {repo_id}"
                                         f"{_known_revisions(repo_id, endpoint)}; use an existing branch, tag or commit")
        if isinstance(cause, HfHubHTTPError):
            return _http_error(cause, label, endpoint)
        if cause is not None:
            return _connection_error(cause, endpoint)
        return OfflineNotCachedError(f"{label} is not in the local cache ({cache_dir}); {download_hint}")
    if isinstance(exc, OfflineModeIsEnabled):
        return OfflineNotCachedError(f"{label} is not in the local cache ({cache_dir}) and offline mode is on; "
                                     f"{download_hint}")
    if isinstance(exc, HfHubHTTPError):
        return _http_error(exc, label, endpoint)
    if isinstance(exc, (*_transport_errors(), ConnectionError, TimeoutError)):
        return _connection_error(exc, endpoint)
    if isinstance(exc, HFValidationError):
        return InputError(f"{repo_id!r} is not a valid hub repository id ({str(exc).splitlines()[0]}); "
                          f"write org/name")
    if isinstance(exc, OSError) and exc.errno is not None:
        return HubError(f"Cannot write the download of {label} to {cache_dir} ({exc.strerror}); free disk space or "
                        f"point HF_HUB_CACHE at a writable folder")
    return exc


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection/timeout error classes (huggingface_hub 2.x uses httpx2, 1.x httpx)."""
    for module in ("httpx2", "httpx"):
        try:
            return (importlib.import_module(module).TransportError,)
        except (ImportError, AttributeError):
            continue
    return ()


def _http_error(exc: Exception, label: str, endpoint: str) -> HubError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", "?")
    return HubError(f"The hub at {endpoint} answered HTTP {status} for {label}; try again later, or check HF_ENDPOINT "
                    f"and your token (HF_TOKEN)")


def _connection_error(exc: BaseException, endpoint: str) -> HubError:  # a HubConnectionError
    from zoo.errors import HubConnectionError

    detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return HubConnectionError(f"Cannot reach the hub at {endpoint} ({detail}); check your network and HF_ENDPOINT, "
                              f"or set HF_HUB_OFFLINE=1 to use cached models only")


def _known_revisions(repo_id: str, endpoint: str) -> str:
    """``" (branches: main; tags: v1)"`` when the repository answers a refs listing; ``""`` otherwise."""
    try:
        from huggingface_hub import HfApi

        refs = HfApi(endpoint=endpoint).list_repo_refs(repo_id)
    except Exception:  # noqa: BLE001 - a best-effort hint only
        return ""
    branches = ", ".join(sorted(r.name for r in refs.branches)) or "none"
    tags = ", ".join(sorted(r.name for r in refs.tags)) or "none"
    return f" (branches: {branches}; tags: {tags})"


# ---------------------------------------------------------------------------------------------------------------------
# Names a manifest gives: files inside the model, other models (confined; see zoo.paths)
# ---------------------------------------------------------------------------------------------------------------------
HUB_FILE_SEPARATOR = "::"
"""``org/name::file.safetensors``: one file of a hub repository, as a manifest or option may name it."""


def manifest_model_ref(resolved: ResolvedModel, key: str = "base_model", value: Any = None) -> str | None:
    """The model reference under ``key`` of ``resolved``'s manifest (or ``value`` when given), checked.

    A hub or package model may name other models only by hub id or ``pkg:`` folder, never by a path on this
    machine, and its hub ids are returned with the ``hf-hub:`` prefix so that no folder of the current directory can
    stand in for them. A local model (the user's own folder) may name any reference. None when the key is absent.

    Raises:
        UnsafePathError: a downloaded model names a local path.
        InputError: the value is not a string or not a valid reference.
    """
    value = (resolved.manifest or {}).get(key) if value is None else value
    if value is None or value == "":
        return None
    source = f"the zoo.json of {resolved.ref}"
    if not isinstance(value, str):
        raise InputError(f"{key!r} in {source} must be a model reference string, got {type(value).__name__}; fix "
                         f"the manifest")
    if resolved.source == _KIND_LOCAL:
        return value
    return str(_portable_ref(value, key, source))


def _portable_ref(value: str, what: str, source: str) -> ModelRef:
    """Parse a reference written in a downloaded manifest: a hub id or ``pkg:`` folder, never a local path (and
    without looking at the disk, so that a folder of the current directory cannot stand in for a hub id)."""
    from zoo.errors import UnsafePathError

    text = value.strip()
    if text.startswith(HUB_PREFIX):
        return _parse_hub(text[len(HUB_PREFIX):], value, explicit=True)
    if text.startswith(PACKAGE_PREFIX):
        return _parse_package(text[len(PACKAGE_PREFIX):], value)
    if text.startswith((".", "/", "~", LOCAL_PREFIX)) or "\\" in text or (len(text) > 1 and text[1] == ":"):
        raise UnsafePathError(f"The {what} {value!r} in {source} is a path on this machine; a model may name other "
                              f"models only as hub ids (org/name) or pkg: folders")
    return _parse_hub(text, value, explicit=False)


def manifest_file(resolved: ResolvedModel, name: str, what: str = "file", *, allow_pickle: bool = False) -> Path:
    """The local path of a file a manifest names: a file inside the model folder (confined, see
    :meth:`ResolvedModel.file`), or ``org/name::file``, one file of a hub repository, fetched on demand."""
    if isinstance(name, str) and HUB_FILE_SEPARATOR in name:
        from zoo.errors import UnsafePathError

        repo, _, filename = name.partition(HUB_FILE_SEPARATOR)
        parsed = _portable_ref(repo, what, f"the zoo.json of {resolved.ref}")
        if parsed.kind != _KIND_HUB:
            raise UnsafePathError(f"The {what} {name!r} in the zoo.json of {resolved.ref} does not name a hub "
                                  f"repository; write org/name::file")
        return hf_hub_file(str(parsed), filename, allow_pickle=allow_pickle)
    return resolved.file(name, what)


# ---------------------------------------------------------------------------------------------------------------------
# The zoo.json manifest
# ---------------------------------------------------------------------------------------------------------------------
_MANIFEST_STR_KEYS = ("method", "task", "base_model", "zoo_version")


def _manifest_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() or path.suffix != ".json" else path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``zoo.json`` manifest of a model folder (``path`` is the folder or the file itself).

    Returns an empty dict when the folder has no manifest. Whether the named method is registered is checked by the
    caller, not here.

    Raises:
        InputError: the file is not valid JSON or a known key has the wrong type.
    """
    file = _manifest_file(path)
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"Manifest {file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         f"fix or delete the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read manifest {file} ({type(exc).__name__}); check the file") from None
    _validate_manifest(data, file)
    return data


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` as ``<path>/zoo.json`` (``path`` is a folder, created if needed) and return the file path.

    Keys: ``method`` (required), ``task``, ``base_model``, ``sampler`` (dict of recommended sampler settings),
    ``zoo_version`` (filled in with the running version when absent), plus any extra JSON-serialisable keys.
    The file is written atomically.
    """
    from zoo import __version__

    data = dict(manifest)
    data.setdefault("zoo_version", __version__)
    folder = Path(path)
    file = folder / MANIFEST_NAME
    _validate_manifest(data, file)
    if not data.get("method"):
        raise InputError(f"Manifest for {file} has no 'method'; name the method that runs this model")
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InputError(f"Manifest for {file} holds a value that is not JSON ({exc}); use plain numbers, strings, "
                         f"lists and dicts") from None
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(file)
    return file


def _validate_manifest(data: Any, file: Path) -> None:
    if not isinstance(data, dict):
        raise InputError(f"Manifest {file} must be a JSON object, got {type(data).__name__}; fix the file")
    for key in _MANIFEST_STR_KEYS:
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise InputError(f"Manifest {file}: {key!r} must be a string, got {type(data[key]).__name__}; fix the file")
    if data.get("task") is not None and data["task"] not in TASKS:
        raise InputError(f"Manifest {file}: task {data['task']!r} is not one of {', '.join(TASKS)}; fix the file")
    if "sampler" in data and data["sampler"] is not None and not isinstance(data["sampler"], dict):
        raise InputError(f"Manifest {file}: 'sampler' must be an object of sampler settings, got "
                         f"{type(data['sampler']).__name__}; fix the file")
