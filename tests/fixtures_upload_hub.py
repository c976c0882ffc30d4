"""A test-only hub *upload* server on 127.0.0.1 that writes into the git repositories the olah fixture serves.

Why it exists: no package on PyPI implements the Hugging Face hub's upload API as a local server (olah, the local hub
of ``fixtures_hub.py``, is a read-only mirror: it has no ``/api/repos/create``, ``preupload`` or ``commit`` routes;
``hf-local-hub`` is a client whose server is a Go binary that its wheel does not ship). So this module imitates the
few endpoints that ``huggingface_hub``'s real client calls for ``create_repo`` + ``create_branch`` + ``upload_folder``
of small files, with the hub's status codes for the failures, and commits what it receives into
``<olah mirrors>/models/<org>/<name>`` -- the repositories olah serves -- so a test can push with ``zoo push`` and
then download and run the model through olah, end to end.

Endpoints (``{repo}`` is ``org/name``; every write needs ``Authorization: Bearer <token>``):

* ``POST /api/repos/create`` -- JSON ``{name, organization, type, visibility}``; creates the git repository with
  the hub's first commit (``.gitattributes``). 409 (with the ``url``, which the client reads) when it exists,
  403 outside the token's namespaces or with a read-only token, 401 without a known token.
* ``POST /api/validate-yaml`` -- JSON ``{content, repoType}``: the README's front matter must be a YAML mapping whose
  ``license`` (if any) is a string and whose ``base_model`` (if any) names hub ids (``org/name``); 400 with
  ``errors`` otherwise (the client calls it before uploading a README.md).
* ``GET /api/models/{repo}`` and ``GET /api/models/{repo}/revision/{rev}`` -- model info (``id``, ``sha``,
  ``siblings``); 404 ``RepoNotFound`` / ``RevisionNotFound``.
* ``POST /api/models/{repo}/branch/{branch}`` -- creates a branch from ``main`` (or JSON ``startingPoint``); 409 if
  it exists.
* ``POST /api/models/{repo}/preupload/{rev}`` -- answers ``uploadMode: "regular"`` for every file (so contents come
  base64 in the commit; LFS/xet uploads are not imitated) and the git blob id of the file already at that path
  (``oid``), so unchanged files are skipped by the client as on the real hub.
* ``POST /api/models/{repo}/commit/{rev}`` -- NDJSON: a ``header`` line (``summary``, ``description``,
  ``parentCommit``), then ``file`` (base64), ``deletedFile`` and ``deletedFolder`` lines; ``lfsFile`` is refused
  (422). Answers ``{commitUrl, commitOid, pullRequestUrl}``.

``UploadHub.fail_next(path_part, status, message)`` makes the next matching request fail (e.g. a 409 commit
conflict). ``UploadHub.requests`` records ``(method, path, status)`` of every call.

Fixture: ``upload_hub`` (function-scoped; the server thread starts once per session). Import it with
``from fixtures_upload_hub import upload_hub, upload_server``  # noqa: F401.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from fixtures_hub import _GIT_IDENTITY, HubServer, olah_server  # noqa: F401  (olah_server: the session fixture)

WRITE_TOKEN = "hf_zoo_test_write"
READ_TOKEN = "hf_zoo_test_read"
USER = "zoo-user"
ORGS = ("zoo-user", "zoo-org")
"""Namespaces the test tokens may write to; anything else answers 403."""

GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"

_REPO_RE = r"(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
_ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(rf"^/api/models/{_REPO_RE}(?:/revision/(?P<rev>.+))?$"), "info"),
    ("POST", re.compile(rf"^/api/models/{_REPO_RE}/branch/(?P<rev>.+)$"), "branch"),
    ("POST", re.compile(rf"^/api/models/{_REPO_RE}/preupload/(?P<rev>.+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO_RE}/commit/(?P<rev>.+)$"), "commit"),
]


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, payload: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.payload = status, message, code, payload or {}


class UploadHub:
    """The upload server: a ThreadingHTTPServer on a free port of 127.0.0.1, writing into ``mirrors``."""

    def __init__(self, mirrors: Path) -> None:
        self.mirrors = Path(mirrors)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []
        self._failures: list[tuple[str, int, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hub._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                hub._handle(self, "POST")

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="upload-hub", daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def fail_next(self, path_part: str, status: int, message: str) -> None:
        """The next request whose path contains ``path_part`` answers ``status`` with ``message``."""
        with self.lock:
            self._failures.append((path_part, status, message))

    def repo_path(self, repo_id: str) -> Path:
        org, _, name = repo_id.partition("/")
        return self.mirrors / "models" / org / name

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlsplit(request.path).path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        status, payload, headers = 500, {"error": "internal error"}, {}
        try:
            status, payload = self._dispatch(method, path, body, request.headers.get("Authorization", ""))
        except _HubError as exc:
            status, payload = exc.status, {"error": exc.message, **exc.payload}
            headers = {"X-Error-Message": exc.message, **({"X-Error-Code": exc.code} if exc.code else {})}
        except Exception as exc:  # noqa: BLE001 - a test server answers 500 with the reason
            payload = {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload).encode()
        with self.lock:
            self.requests.append((method, path, status))
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    def _dispatch(self, method: str, path: str, body: bytes, authorization: str) -> tuple[int, dict]:
        with self.lock:
            for i, (part, status, message) in enumerate(self._failures):
                if part in path:
                    del self._failures[i]
                    raise _HubError(status, message)
        for verb, pattern, action in _ROUTES:
            match = pattern.match(path)
            if match and verb == method:
                user = self._user(authorization, write=action not in ("info", "validate_yaml"))
                groups = match.groupdict()
                repo_id = f"{groups['org']}/{groups['name']}" if groups.get("org") else None
                with self.lock:  # one git operation at a time
                    return getattr(self, f"_{action}")(user, repo_id, groups.get("rev"), body)
        raise _HubError(404, f"Sorry, we can't find the page you are looking for ({method} {path})")

    # -- auth -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _user(authorization: str, *, write: bool) -> dict | None:
        token = authorization.removeprefix("Bearer ").strip() if authorization else ""
        if not token:
            if write:
                raise _HubError(401, "Invalid username or password.")
            return None
        if token not in (WRITE_TOKEN, READ_TOKEN):
            raise _HubError(401, "Invalid credentials in Authorization header")
        return {"name": USER, "orgs": ORGS, "write": token == WRITE_TOKEN}

    @staticmethod
    def _require_write(user: dict | None, namespace: str, what: str) -> None:
        if user is None or namespace not in user["orgs"]:
            raise _HubError(403, f"You don't have the rights to {what} under the namespace \"{namespace}\"")
        if not user["write"]:
            raise _HubError(403, "This token has read access only; use a token with write access")

    # -- git ------------------------------------------------------------------------------------------------------
    def _git(self, repo: Path, *args: str, stdin: bytes | None = None) -> str:
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        result = subprocess.run(["git", *_GIT_IDENTITY, *args], cwd=repo, env=env, capture_output=True,
                                input=stdin)
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode().strip()

    def _existing(self, repo_id: str) -> Path:
        repo = self.repo_path(repo_id)
        if not (repo / ".git").is_dir():
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _branches(self, repo: Path) -> set[str]:
        return set(self._git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())

    def _head(self, repo: Path, rev: str) -> str:
        try:
            return self._git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
        except RuntimeError:
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound") from None

    # -- endpoints ------------------------------------------------------------------------------------------------
    def _create(self, user, _repo_id, _rev, body: bytes) -> tuple[int, dict]:
        request = json.loads(body or b"{}")
        namespace, name = request.get("organization") or USER, request.get("name") or ""
        if request.get("type", "model") != "model":
            raise _HubError(400, "this test hub stores models only")
        repo_id = f"{namespace}/{name}"
        repo = self.repo_path(repo_id)
        if (repo / ".git").is_dir():
            if user is not None and namespace in user["orgs"]:
                raise _HubError(409, "You already created this model repo",  # the hub answers the url too
                                payload={"url": f"{self.endpoint}/{repo_id}"})
        self._require_write(user, namespace, "create a model")
        repo.mkdir(parents=True, exist_ok=True)
        self._git(repo, "init", "-q", "-b", "main")
        (repo / ".gitattributes").write_text(GITATTRIBUTES)
        self._git(repo, "add", "-A")
        self._git(repo, "commit", "-q", "-m", "initial commit")
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id,
                     "private": request.get("visibility") == "private"}

    def _validate_yaml(self, user, _repo_id, _rev, body: bytes) -> tuple[int, dict]:
        import yaml
        from huggingface_hub.utils import validate_repo_id

        content = json.loads(body or b"{}").get("content", "")
        match = re.match(r"^---\n(.*?)\n---\s*(\n|$)", content, re.S)
        errors = []
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            meta, errors = {}, [f"Error parsing the metadata: {str(exc).splitlines()[0]}"]
        if not isinstance(meta, dict):
            meta, errors = {}, ["Metadata must be a YAML mapping"]
        if "license" in meta and not isinstance(meta["license"], str):
            errors.append('"license" must be a string')
        bases = meta.get("base_model", [])
        for base in bases if isinstance(bases, list) else [bases]:
            try:
                if not isinstance(base, str) or base.count("/") != 1:
                    raise ValueError(base)
                validate_repo_id(base)
            except Exception:  # noqa: BLE001
                errors.append(f'"base_model" must be a hub model id (org/name), got {base!r}')
        if errors:
            raise _HubError(400, "; ".join(errors), payload={"errors": [{"message": e} for e in errors]})
        return 200, {"errors": [], "warnings": []}

    def _info(self, user, repo_id, rev, _body) -> tuple[int, dict]:
        repo = self._existing(repo_id)
        sha = self._head(repo, rev or "main")
        files = self._git(repo, "ls-tree", "-r", "--name-only", sha).splitlines()
        return 200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                     "siblings": [{"rfilename": f} for f in files]}

    def _branch(self, user, repo_id, rev, body: bytes) -> tuple[int, dict]:
        repo = self._existing(repo_id)
        self._require_write(user, repo_id.split("/")[0], "create a branch")
        if rev in self._branches(repo):
            raise _HubError(409, f"Reference already exists: refs/heads/{rev}")
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        self._git(repo, "branch", rev, self._head(repo, start))
        return 200, {}

    def _preupload(self, user, repo_id, rev, body: bytes) -> tuple[int, dict]:
        repo = self._existing(repo_id)
        self._require_write(user, repo_id.split("/")[0], "write")
        sha = self._head(repo, rev)
        files = []
        for entry in json.loads(body)["files"]:
            try:
                oid = self._git(repo, "rev-parse", f"{sha}:{entry['path']}")
            except RuntimeError:
                oid = None
            files.append({"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return 200, {"files": files, "commitOid": sha}

    def _commit(self, user, repo_id, rev, body: bytes) -> tuple[int, dict]:
        repo = self._existing(repo_id)
        self._require_write(user, repo_id.split("/")[0], "write")
        head = self._head(repo, rev)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        if rev not in self._branches(repo):
            raise _HubError(400, f"Can only commit to a branch, not {rev}")
        self._git(repo, "checkout", "-q", "-f", rev)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            target = self._inside(repo, value.get("path", ""))
            if key == "file":
                if value.get("encoding") != "base64":
                    raise _HubError(400, "file content must be base64")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(value["content"]))
            elif key == "deletedFile":
                target.unlink(missing_ok=True)
            elif key == "deletedFolder":
                self._git(repo, "rm", "-r", "-q", "--ignore-unmatch", value["path"])
            elif key == "lfsFile":
                raise _HubError(422, "This test hub accepts regular (base64) files only, not LFS/xet uploads")
            else:
                raise _HubError(400, f"Unknown commit operation {key!r}")
        self._git(repo, "add", "-A")
        message = header.get("summary") or "commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        self._git(repo, "commit", "-q", "--allow-empty", "-F", "-", stdin=message.encode())
        oid = self._git(repo, "rev-parse", "HEAD")
        self._git(repo, "checkout", "-q", "-f", "main")
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None, "success": True}

    @staticmethod
    def _inside(repo: Path, rel: str) -> Path:
        rel = rel.strip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..", ".git") for p in parts):
            raise _HubError(400, f"Invalid path in commit: {rel!r}")
        return repo.joinpath(*parts)


_UPLOAD: UploadHub | None = None


@pytest.fixture(scope="session")
def upload_server(olah_server: HubServer) -> UploadHub:  # noqa: F811 - the olah fixture
    """The upload server of this session, writing into the repositories ``olah_server`` serves."""
    global _UPLOAD
    if _UPLOAD is None:
        _UPLOAD = UploadHub(olah_server.mirrors)
    yield _UPLOAD
    _UPLOAD.stop()
    _UPLOAD = None


@dataclass
class ActiveUploadHub:
    server: UploadHub
    olah: HubServer

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def repo_path(self, repo_id: str) -> Path:
        return self.server.repo_path(repo_id)

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        """Every file committed on ``rev`` (path -> bytes), read from git."""
        repo = self.repo_path(repo_id)
        names = self.server._git(repo, "ls-tree", "-r", "--name-only", rev).splitlines()
        return {name: subprocess.run(["git", "show", f"{rev}:{name}"], cwd=repo, capture_output=True,
                                     check=True).stdout for name in names}


@pytest.fixture
def upload_hub(upload_server, olah_server, monkeypatch) -> ActiveUploadHub:  # noqa: F811
    """The upload server for this test: ``HF_ENDPOINT`` points at it and ``HF_TOKEN`` holds a write token;
    ``HF_HOME`` is the test's own (set by the project's conftest or here)."""
    monkeypatch.setenv("HF_ENDPOINT", upload_server.endpoint)
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return ActiveUploadHub(upload_server, olah_server)
