"""A WebDAV server (wsgidav 4 on cheroot) standing in for an HTTP/WebDAV object store.

Why WebDAV at all: obstore's ``HTTPStore`` is its "plain HTTP" backend and speaks WebDAV (PUT,
MKCOL for missing parent collections, PROPFIND for listing, COPY/MOVE with ``Overwrite``).  It is
the one backend without conditional PUT, so the backup's commit protocol falls back to
"temp object + ``copy(overwrite=False)``", which wsgidav implements atomically (COPY with
``Overwrite: F`` answers 412 when the target exists).

Why it runs from the project's own virtualenv: wsgidav and cheroot are ordinary dev dependencies
(``pip install -e .[dev]``), so there is nothing to install into ``.cache``.  The server shares
``datadir/root`` read-write with anonymous access and is run quietly (no per-request log lines).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from dev._common import HOST, Service, ServiceError


class WebDAV(Service):
    name = "webdav"
    env_var = "WEBDAV_URL"
    start_timeout_s = 30.0

    @property
    def port(self) -> int:
        return int(os.environ.get("WEBDAV_PORT", "8765"))

    @property
    def root(self) -> Path:
        return self.datadir / "root"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def install(self) -> None:
        """Nothing to download; only check that the dev extras are installed in this interpreter."""
        for module in ("wsgidav", "cheroot"):
            if importlib.util.find_spec(module) is None:
                raise ServiceError(f"webdav: {module} is missing; run `pip install -e .[dev]`")

    def prepare(self) -> None:
        # Start empty every time, like the other emulators, so runs cannot see each other's objects.
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        # wsgidav has no ``python -m wsgidav``; its console script sits next to the interpreter.
        # Fall back to calling the same entry point when the script is absent (e.g. a zipapp).
        script = Path(sys.executable).parent / "wsgidav"
        entry = [str(script)] if script.exists() else [
            sys.executable, "-c", "import sys; from wsgidav.server.server_cli import run; sys.exit(run())"]
        argv = [
            *entry,
            "--host", HOST,
            "--port", str(self.port),
            "--root", str(self.root),
            # Anonymous read-write: without it --root shares need a user_mapping and answer 401.
            "--auth", "anonymous",
            "--server", "cheroot",
            # A stray wsgidav.yaml in the working directory must not change the server.
            "--no-config",
            # verbose 3 -> 1: no per-request lines, but application exceptions are still logged.
            "-q", "-q",
        ]
        return argv, {"PYTHONUNBUFFERED": "1"}, self.datadir

    def ready(self) -> bool:
        """OPTIONS answers with a ``DAV`` header only from a WebDAV server, not from any HTTP listener."""
        request = urllib.request.Request(self.url, method="OPTIONS")
        try:
            with urllib.request.urlopen(request, timeout=2.0) as resp:
                return resp.status < 300 and resp.headers.get("DAV") is not None
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def endpoint(self) -> dict[str, str]:
        return {"WEBDAV_URL": self.url}


SERVICE = WebDAV()
