"""Publishing: upload an exported model folder to a Hugging Face hub repository.

:func:`push_folder` is the one upload path of distill-zoo: ``zoo push FOLDER org/name``, ``zoo train ...
--push-to-hub org/name``, ``zoo export RUN OUT --push-to-hub org/name`` and ``zoo.sdk.push_folder`` all call it.
It uses ``huggingface_hub``'s own client (``HfApi.create_repo`` with ``exist_ok=True``, ``create_branch`` for a new
``revision``, then ``upload_folder``), so it works against the public hub and any server that speaks its upload
protocol (``POST /api/repos/create``, ``/api/models/{repo}/preupload/{rev}``, ``/api/models/{repo}/commit/{rev}``).

Everything that can be checked without the network is checked first (the folder, the repository id, the revision,
offline mode, a token). Every failure is a one-line :class:`~zoo.errors.ZooError` that names the problem and the fix:

* no token / token refused (HTTP 401) -- log in with ``hf auth login`` or set ``HF_TOKEN``;
* no write access or the name belongs to someone else (HTTP 403), or a conflict (HTTP 409);
* a server without the upload API (HTTP 404/405/501 on an upload call, e.g. a read-only mirror such as olah);
* no network (connection refused, DNS, timeout) or offline mode (``HF_HUB_OFFLINE=1``).

When the folder's ``README.md`` is a distill-zoo model card, its usage line (``zoo run --model ...``) is pointed at
the repository before the upload, so the card on the hub shows a command that runs the pushed model.

This module never imports torch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from zoo.errors import HubConnectionError, InputError, PublishError, ZooError
from zoo.spec import MANIFEST_NAME

DEFAULT_COMMIT_MESSAGE = "Upload model exported by distill-zoo"
_LOGIN_FIX = "log in with `hf auth login` or set HF_TOKEN to a token with write access"
_NO_UPLOAD_STATUSES = (404, 405, 501)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_USAGE_RE = re.compile(r"^(?P<head>zoo (?:run|upscale)\b.*?--model )(?P<ref>'[^']*'|\S+)(?P<tail>.*)$")


def push_folder(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None, private: bool = False,
                commit_message: str | None = None, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload ``folder`` to the hub model repository ``repo_id`` and return the URL of the commit.

    Args:
        folder: an exported model folder (``zoo export``, ``zoo train``'s ``<run>/export``), or any non-empty folder.
        repo_id: ``org/name``; the repository is created when it does not exist (as private with ``private=True``).
        revision: the branch to commit to (default ``main``); created from ``main`` when it does not exist.
        private: create the repository as private (an existing repository keeps its visibility).
        commit_message: the commit's summary (default :data:`DEFAULT_COMMIT_MESSAGE`).
        token: a hub token (default: ``HF_TOKEN`` or the token saved by ``hf auth login``).
        endpoint: the hub URL (default: ``$HF_ENDPOINT`` read now, else the public hub).

    Raises:
        InputError: the folder is missing or empty, ``repo_id`` or ``revision`` is malformed.
        PublishError: offline mode, no token, the token is refused, no write access, a conflict, or the server has
            no upload API.
        HubConnectionError: the hub cannot be reached.
    """
    from zoo.hub import hub_endpoint

    # 1. Checks that need no network.
    folder = check_folder(folder)
    repo_id = check_repo_id(repo_id)
    revision = check_revision(revision)
    commit_message = (commit_message or DEFAULT_COMMIT_MESSAGE).strip() or DEFAULT_COMMIT_MESSAGE
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    token = check_can_push(repo_id, token)

    # 2. Create the repository (and branch), then upload.
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="distill-zoo")
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=True if private else None)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        point_card_at(folder, repo_id, revision)  # once the hub has the repository
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message)
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated into one line below; anything unknown is re-raised
        translated = translate_push_error(exc, repo_id, endpoint, revision)
        if translated is exc:
            raise
        raise translated from None
    return str(getattr(info, "commit_url", None) or info)


# ---------------------------------------------------------------------------------------------------------------------
# Checks before the network
# ---------------------------------------------------------------------------------------------------------------------
def check_folder(folder: str | os.PathLike) -> Path:
    """The folder to upload, which must exist and hold at least one file (one line otherwise)."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise InputError(f"Folder {path} does not exist; export a model first (zoo export RUN_DIR OUT) and push OUT")
    if not path.is_dir():
        raise InputError(f"{path} is a file, not a folder; push the folder that holds the model (with its "
                         f"{MANIFEST_NAME})")
    if not any(p.is_file() for p in path.rglob("*") if ".git" not in p.relative_to(path).parts):
        raise InputError(f"Folder {path} is empty; export a model into it first (zoo export RUN_DIR {path})")
    return path


def check_repo_id(repo_id: str) -> str:
    """``org/name`` as the hub accepts it (``huggingface_hub.utils.validate_repo_id``), or a one-line InputError."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(repo_id or "").strip()
    if text.startswith("hf-hub:"):
        text = text[len("hf-hub:"):]
    if "@" in text:
        raise InputError(f"Repository id {repo_id!r} names a revision; write org/name and give the branch with "
                         f"--revision")
    if text.count("/") != 1:
        raise InputError(f"Repository id {repo_id!r} must look like org/name (your user name or an organization, a "
                         f"slash, the model's name)")
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        raise InputError(f"Repository id {repo_id!r} is not a valid hub id ({str(exc).splitlines()[0]}); use "
                         f"letters, digits, '-', '_' and '.' in org/name") from None
    return text


def check_revision(revision: str | None) -> str | None:
    """A branch name to commit to (None: ``main``); tags, commits and odd names are refused in one line."""
    if revision is None:
        return None
    text = str(revision).strip()
    if not text:
        raise InputError("Empty --revision; name the branch to push to, or omit it for main")
    if _COMMIT_RE.match(text) or text.startswith("refs/") or any(ch.isspace() for ch in text) or ".." in text \
            or text.endswith("/") or text.startswith("/") or "@" in text:
        raise InputError(f"--revision {revision!r} is not a branch name; name a branch (e.g. v1 or dev) to push to")
    return text


def check_can_push(repo_id: str, token: str | None = None) -> str:
    """Offline mode off and a token at hand (``token``, ``HF_TOKEN`` or ``hf auth login``'s); returns the token.
    ``zoo train --push-to-hub`` calls it before training, so a missing login is said before hours of work."""
    from zoo.hub import is_offline

    if is_offline():
        raise PublishError(f"Offline mode is on (HF_HUB_OFFLINE), so nothing can be uploaded to {repo_id}; unset "
                           f"HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push")
    token = token or _saved_token()
    if not token:
        raise PublishError(f"No Hugging Face token to upload {repo_id} with: {_LOGIN_FIX}")
    return token


def _saved_token() -> str | None:
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # noqa: BLE001 - e.g. a failed OIDC exchange: treated as "no token", said in one line
        return None


# ---------------------------------------------------------------------------------------------------------------------
# The model card's usage line
# ---------------------------------------------------------------------------------------------------------------------
def point_card_at(folder: Path, repo_id: str, revision: str | None = None) -> bool:
    """Point the ``zoo run --model ...`` line of a distill-zoo model card (``folder/README.md``) at
    ``hf-hub:repo_id[@revision]``. Returns True when the card was changed; other READMEs are left alone."""
    card = folder / "README.md"
    if not card.is_file() or not (folder / MANIFEST_NAME).is_file():
        return False
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "library_name: distill-zoo" not in text.split("\n---", 1)[0]:
        return False
    ref = shlex.quote(f"hf-hub:{repo_id}" + (f"@{revision}" if revision else ""))
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        match = _USAGE_RE.match(line)
        if match and match.group("ref") != ref:
            lines[i] = f"{match.group('head')}{ref}{match.group('tail')}"
            changed = True
    if changed:
        tmp = card.with_name(f".README.md.tmp-{os.getpid()}")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        tmp.replace(card)
    return changed


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------
def translate_push_error(exc: BaseException, repo_id: str, endpoint: str, revision: str | None = None
                         ) -> BaseException:
    """Map an exception of ``huggingface_hub`` (or its HTTP client) during an upload to a one-line ZooError;
    return ``exc`` itself when it is not a known upload failure."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    from zoo.hub import _transport_errors

    if isinstance(exc, LocalTokenNotFoundError):
        return PublishError(f"No Hugging Face token to upload {repo_id} with: {_LOGIN_FIX}")
    if isinstance(exc, OfflineModeIsEnabled):
        return PublishError(f"Offline mode is on (HF_HUB_OFFLINE), so nothing can be uploaded to {repo_id}; unset "
                            f"HF_HUB_OFFLINE to push")
    if isinstance(exc, HfHubHTTPError) and getattr(exc, "response", None) is not None:
        return _http_push_error(exc, repo_id, endpoint, revision)
    if isinstance(exc, (*_transport_errors(), ConnectionError, TimeoutError)):
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        return HubConnectionError(f"Cannot reach the hub at {endpoint} to upload {repo_id} ({detail}); check your "
                                  f"network and HF_ENDPOINT")
    if isinstance(exc, ValueError) and str(exc).startswith("Invalid metadata in README.md"):
        reasons = "; ".join(line.strip("- ").strip() for line in str(exc).splitlines()[1:] if line.strip())
        return PublishError(f"The hub at {endpoint} refused the metadata of README.md ({reasons[:200] or 'invalid'})"
                            f"; fix the card's front matter (re-export the model to rewrite it)")
    if isinstance(exc, (json.JSONDecodeError, KeyError)) or (
            isinstance(exc, ValueError) and "improperly formatted" in str(exc)):
        return PublishError(f"The server at {endpoint} does not answer like a hub upload API "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); point "
                            f"HF_ENDPOINT at a hub that accepts uploads (default https://huggingface.co)")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.filename):
        return InputError(f"Cannot read {exc.filename} for the upload ({exc.strerror}); check the folder's files")
    return exc


def _http_push_error(exc: Any, repo_id: str, endpoint: str, revision: str | None) -> ZooError:
    response = exc.response
    status = response.status_code
    request = getattr(response, "request", None)
    call = f"{request.method} {request.url.path}" if request is not None else "the upload"
    said = (getattr(exc, "server_message", None) or "").strip().splitlines()
    said = f": {said[0][:160]}" if said else ""
    where = f"(HTTP {status} on {call}{said})"
    if status == 401:
        return PublishError(f"The hub at {endpoint} refused the token {where}; {_LOGIN_FIX}")
    if status == 403:
        return PublishError(f"No write access to {repo_id} on {endpoint} {where}: the name belongs to another user or "
                            f"organization, or the token is read-only; push to your own namespace or an organization "
                            f"you belong to, or {_LOGIN_FIX}")
    if status == 409:
        return PublishError(f"{repo_id} on {endpoint} conflicts with an existing repository or another upload "
                            f"{where}; choose another name, or retry when the other upload has finished")
    if status == 404 and response.headers.get("X-Error-Code") == "RevisionNotFound":
        return PublishError(f"Branch {revision or 'main'!r} does not exist in {repo_id} {where}; name an existing "
                            f"branch with --revision, or a new one (it is created from main)")
    if status in _NO_UPLOAD_STATUSES:
        return PublishError(f"The server at {endpoint} has no upload API {where}: it is a read-only mirror or not a "
                            f"hub; point HF_ENDPOINT at a hub that accepts uploads (default https://huggingface.co)")
    return PublishError(f"The hub at {endpoint} could not take the upload to {repo_id} {where}; try again later, or "
                        f"check HF_ENDPOINT and your token")
