"""A real Hugging Face-compatible hub on 127.0.0.1 for tests: olah serving local git repositories, fully offline.

Use it from a test module::

    from fixtures_hub import hub_server, olah_server  # noqa: F401  (both names: pytest needs the session fixture)

    def test_download(hub_server):
        sha = hub_server.add_repo("org/tiny", {"config.json": b"{}", "unet/model.safetensors": Path(...)},
                                  tags=["v1"])
        resolved = zoo.hub.resolve_model("hf-hub:org/tiny@v1")
        assert resolved.commit == sha

API (``hub_server`` is function-scoped and returns an :class:`ActiveHub`):

* ``hub_server.add_repo(repo_id, files, *, tags=(), branch="main", message=None, replace=False) -> commit sha``:
  commits ``files`` to the repository (created on first use). ``files`` maps a path inside the repo to ``bytes``,
  ``str`` (UTF-8 text) or a ``Path`` (a file is copied; a folder is copied recursively under that path); ``files`` may
  also be a ``Path`` to a folder whose whole content becomes the repo root (e.g. a pipeline saved with
  ``save_pretrained``). Calling it again on the same repo adds a commit on ``branch`` (``replace=True`` first removes
  every tracked file), so "main moved on" can be tested. Tags are (re)pointed at the new commit.
* ``hub_server.endpoint`` -- ``http://127.0.0.1:<port>``; ``hub_server.repo_path(repo_id)`` -- the git work tree.
* ``hub_server.set_offline(True)`` -- offline mode for this test (env var *and* huggingface_hub's constant).

How HF_ENDPOINT reaches huggingface_hub: huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` once, at import time, into ``huggingface_hub.constants``; setting the env var later changes
nothing for code that calls huggingface_hub directly. So for each test the fixture (1) sets the env vars, which
``zoo.hub`` reads at call time and passes explicitly (``endpoint=``, ``cache_dir=``, ``local_files_only=``), and
(2) monkeypatches ``constants.ENDPOINT``, ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, ``constants.HF_HUB_CACHE`` and
``constants.HF_HUB_OFFLINE``, so direct callers (``hf_hub_download``, diffusers' ``from_pretrained("org/name")``) reach
the test server and the per-test cache as well. Both are undone after the test. Code run in a subprocess just needs
``HF_ENDPOINT`` in its environment (``hub_server.env()`` gives the variables).

The olah process starts once per test session (module-level singleton, shared by every module that imports these
fixtures), waits until the port answers (bounded), and is terminated by its pid at the end of the session.
Repositories live for the whole session, so give them names unique to your test module (e.g. ``"hub-test/..."``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import pytest

FileContent = Union[bytes, str, Path]

STARTUP_TIMEOUT_S = 90.0
"""How long to wait for olah to answer (it imports fastapi/uvicorn; slow on busy shared CPUs)."""

_GIT_IDENTITY = ["-c", "user.name=zoo-tests", "-c", "user.email=zoo-tests@localhost", "-c", "commit.gpgsign=false",
                 "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _olah_executable() -> str:
    candidate = Path(sys.executable).parent / "olah-cli"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("olah-cli")
    if found:
        return found
    pytest.fail("olah-cli not found: the hub tests need the local hub server; pip install 'distill-zoo[dev]'")


class HubServer:
    """An olah process serving ``<root>/mirrors/models/<org>/<name>/`` git repositories on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.mirrors = self.root / "mirrors"
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = self.root / "olah.log"

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("the hub server is not started")
        return f"http://127.0.0.1:{self.port}"

    # -- process ----------------------------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> None:
        """Start olah on a free port and wait (bounded) until it answers HTTP; retry on a port race."""
        last_error = ""
        for _ in range(attempts):
            self.port = _free_port()
            config = self.root / "olah.toml"
            # metadata-cache-ttl = 0: a branch moved by add_repo() is seen at once.
            config.write_text(
                "[basic]\n"
                f'host = "127.0.0.1"\nport = {self.port}\n'
                f'repos-path = "{(self.root / "olah-cache").as_posix()}"\n'
                f'mirrors-path = ["{self.mirrors.as_posix()}"]\n'
                "metadata-cache-ttl = 0\n\n"
                "[accessibility]\noffline = true\n"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
            env.update(NO_PROXY="localhost,127.0.0.1,::1", no_proxy="localhost,127.0.0.1,::1", OMP_NUM_THREADS="1")
            with open(self._log, "ab") as log:
                self.process = subprocess.Popen(
                    [_olah_executable(), "-c", str(config), "--log-path", str(self.root / "logs")],
                    cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            if self._wait_ready():
                atexit.register(self.stop)
                return
            last_error = self._log_tail()
            self.stop()
        raise RuntimeError(f"olah did not start after {attempts} attempts; log tail:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = f"{self.endpoint}/api/models/zoo-probe/none/revision/main"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return True
            except urllib.error.HTTPError:  # any HTTP answer (here 401 "repository not found") means it is up
                return True
            except OSError:
                time.sleep(0.2)
        return False

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self._log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the olah process (by its pid) and wait for it; idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    # -- repositories -----------------------------------------------------------------------------------------
    def repo_path(self, repo_id: str) -> Path:
        org, _, name = repo_id.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
        return self.mirrors / "models" / org / name

    def _git(self, repo: Path, *args: str) -> str:
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        result = subprocess.run(["git", *_GIT_IDENTITY, *args], cwd=repo, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
        return result.stdout.strip()

    def add_repo(self, repo_id: str, files: Mapping[str, FileContent] | Path, *, tags=(), branch: str = "main",
                 message: str | None = None, replace: bool = False) -> str:
        """Commit ``files`` to ``repo_id`` on ``branch`` (creating repo and branch as needed); return the commit sha."""
        repo = self.repo_path(repo_id)
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True, exist_ok=True)
            self._git(repo, "init", "-q", "-b", branch)
        elif branch in self._branches(repo):
            self._git(repo, "checkout", "-q", branch)
        else:  # a new branch, starting from the current commit
            self._git(repo, "checkout", "-q", "-b", branch)
        if replace:
            self._git(repo, "rm", "-r", "-q", "--ignore-unmatch", ".")
        entries = {"": files} if isinstance(files, Path) else dict(files)
        for rel, content in entries.items():
            self._write(repo, rel, content)
        self._git(repo, "add", "-A")
        self._git(repo, "commit", "-q", "--allow-empty", "-m", message or f"update {repo_id}")
        sha = self._git(repo, "rev-parse", "HEAD")
        for tag in tags:
            self._git(repo, "tag", "-f", tag, sha)
        return sha

    def _branches(self, repo: Path) -> set[str]:
        return set(self._git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())

    @staticmethod
    def _write(repo: Path, rel: str, content: FileContent) -> None:
        rel = rel.replace("\\", "/").strip("/")
        if any(part in ("..", ".git") for part in rel.split("/")):
            raise ValueError(f"repo file path {rel!r} must stay inside the repository and not touch .git")
        target = repo / rel if rel else repo
        if isinstance(content, Path):
            if content.is_dir():
                shutil.copytree(content, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(content, target)
            return
        if not rel:
            raise ValueError("only a Path to a folder can be added at the repository root")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8") if isinstance(content, str) else bytes(content))


@dataclass
class ActiveHub:
    """The session's :class:`HubServer`, made the hub of the current test (env vars + huggingface_hub constants)."""

    server: HubServer
    monkeypatch: pytest.MonkeyPatch

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def add_repo(self, repo_id: str, files, **kwargs) -> str:
        return self.server.add_repo(repo_id, files, **kwargs)

    def repo_path(self, repo_id: str) -> Path:
        return self.server.repo_path(repo_id)

    def env(self) -> dict[str, str]:
        """The variables a subprocess needs to use this hub and this test's cache."""
        keys = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "NO_PROXY")
        return {k: os.environ[k] for k in keys if k in os.environ}

    def activate(self) -> None:
        from huggingface_hub import constants

        self.monkeypatch.setenv("HF_ENDPOINT", self.endpoint)
        self.monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        self.monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                                 self.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        if os.environ.get("HF_HUB_CACHE"):
            self.monkeypatch.setattr(constants, "HF_HUB_CACHE", os.environ["HF_HUB_CACHE"])
        self.set_offline(False)

    def set_offline(self, offline: bool) -> None:
        """Turn huggingface_hub's offline mode on or off for this test (env var and the import-time constant)."""
        from huggingface_hub import constants

        if offline:
            self.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        else:
            self.monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
            self.monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        self.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


_SERVER: HubServer | None = None


@pytest.fixture(scope="session")
def olah_server(tmp_path_factory) -> HubServer:
    """The olah process of this test session (started on first use, stopped at the end of the session)."""
    global _SERVER
    if _SERVER is None or _SERVER.process is None or _SERVER.process.poll() is not None:
        server = HubServer(tmp_path_factory.mktemp("olah-hub"))
        server.start()
        _SERVER = server
    yield _SERVER
    _SERVER.stop()


@pytest.fixture
def hub_server(olah_server, monkeypatch) -> ActiveHub:
    """The local hub, active for this test: ``HF_ENDPOINT`` and huggingface_hub's constants point at it."""
    hub = ActiveHub(olah_server, monkeypatch)
    hub.activate()
    return hub
