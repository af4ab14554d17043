"""Toxiproxy (github.com/Shopify/toxiproxy): a TCP proxy that injects network faults on demand.

Why it is here: the fault tests (``tests/faults``) put it between the engine and Kafka, LocalStack
S3 and Azurite, then add latency, bandwidth limits, connection resets, half-open connections
(the ``timeout`` toxic) or take a proxy down for a while, against real services.

Why ``go install``: releases ship as GitHub binaries and Docker images, but this workplace reaches
package registries only, and the Go module proxy serves the module source.  The server command
lives at ``cmd/server`` (``go install`` names the binary ``server``); it is renamed to
``toxiproxy-server`` in ``.cache/toxiproxy/bin/<version>/``.  Building takes about a minute on
2 cores; the module and build caches are deleted afterwards, like :mod:`dev.gcs` does.

The server listens on ``127.0.0.1:TOXIPROXY_PORT`` (default 8474) for its HTTP API only; every
proxy it creates listens where :meth:`Toxiproxy.create_proxy` says.  :class:`Toxiproxy` is also
the client (plain ``urllib``, no extra dependency).

Environment knobs: ``TOXIPROXY_PORT``, ``TOXIPROXY_VERSION`` (module version to build), and
``TOXIPROXY_URL`` to use a server running elsewhere (then nothing is started).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dev._common import CACHE, HOST, Service, ServiceError, log, run

MODULE = "github.com/Shopify/toxiproxy/v2"
#: Resolved by the Go module proxy on 2026-12 (``go list -m github.com/Shopify/toxiproxy/v2@v2.12.0``;
#: ``@latest`` still answers v2.5.0 because later tags were published after a module-path hiccup).
DEFAULT_VERSION = "v2.12.0"


class Toxiproxy(Service):
    name = "toxiproxy"
    env_var = "TOXIPROXY_URL"
    start_timeout_s = 30.0

    @property
    def version(self) -> str:
        return os.environ.get("TOXIPROXY_VERSION", DEFAULT_VERSION)

    @property
    def port(self) -> int:
        return int(os.environ.get("TOXIPROXY_PORT", "8474"))

    @property
    def home(self) -> Path:
        return CACHE / "toxiproxy"

    @property
    def binary(self) -> Path:
        return self.home / "bin" / self.version / "toxiproxy-server"

    @property
    def marker(self) -> Path:
        """Written only after a complete build, so an interrupted ``go install`` is redone."""
        return self.home / f"installed-{self.version}"

    @property
    def url(self) -> str:
        return os.environ.get(self.env_var) or f"http://{HOST}:{self.port}"

    # -- service hooks ---------------------------------------------------------------------------
    def install(self) -> None:
        if self.marker.exists() and self.binary.exists():
            return
        if shutil.which("go") is None:
            raise ServiceError("toxiproxy: the `go` command is missing; toxiproxy is built from source")
        t0 = time.monotonic()
        log(f"toxiproxy: building {MODULE}/cmd/server@{self.version}")
        gobin = self.binary.parent
        gobin.mkdir(parents=True, exist_ok=True)
        env = {"GOBIN": str(gobin), "GOMODCACHE": str(self.home / "gomod"), "GOCACHE": str(self.home / "gobuild"),
               "CGO_ENABLED": "0"}
        run(["go", "install", "-modcacherw", f"{MODULE}/cmd/server@{self.version}"], env=env, cwd=self.home,
            what="toxiproxy: go install")
        built = gobin / "server"
        if not built.exists():
            raise ServiceError(f"toxiproxy: go install succeeded but {built} is missing")
        built.replace(self.binary)
        for cache in ("gomod", "gobuild"):
            shutil.rmtree(self.home / cache, ignore_errors=True)
        self.marker.write_text(f"{MODULE}/cmd/server@{self.version}\n")
        log(f"toxiproxy: installed in {time.monotonic() - t0:.0f}s")

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        return [str(self.binary), "-host", HOST, "-port", str(self.port)], {}, self.home

    def ready(self) -> bool:
        try:
            return bool(self.version_of_server())
        except ServiceError:
            return False

    def after_start(self) -> None:
        # A `go install` build reports "git" as its version; the module version is what was built.
        log(f"toxiproxy: {MODULE}@{self.version} (reports {self.version_of_server()!r}) at {self.url}")

    def endpoint(self) -> dict[str, str]:
        return {self.env_var: self.url}

    # -- client ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5.0) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"toxiproxy: {method} {path} answered {exc.code}: {exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise ServiceError(f"toxiproxy: {method} {path} failed: {exc}") from exc
        return json.loads(raw) if raw.strip() else None

    def version_of_server(self) -> str:
        request = urllib.request.Request(f"{self.url}/version")
        try:
            with urllib.request.urlopen(request, timeout=2.0) as resp:
                text: str = resp.read().decode().strip()
        except OSError as exc:
            raise ServiceError(f"toxiproxy: no server at {self.url}: {exc}") from exc
        try:  # v2.6+ answers JSON, older releases plain text
            return str(json.loads(text).get("version", text))
        except ValueError:
            return text

    def create_proxy(self, name: str, listen_port: int, upstream: str) -> None:
        """(Re)create proxy ``name`` on ``127.0.0.1:listen_port`` forwarding to ``upstream`` (host:port)."""
        self.delete_proxy(name)
        self._call("POST", "/proxies", {"name": name, "listen": f"{HOST}:{listen_port}", "upstream": upstream,
                                        "enabled": True})

    def delete_proxy(self, name: str) -> None:
        try:
            self._call("DELETE", f"/proxies/{name}")
        except ServiceError as exc:
            if "404" not in str(exc):
                raise

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabled: the listener is closed and every open connection is cut (the service is "down")."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(self, proxy: str, toxic_type: str, attributes: dict[str, int] | None = None, *,
                  name: str | None = None, stream: str = "downstream", toxicity: float = 1.0) -> str:
        """Add a toxic (``latency``, ``bandwidth``, ``reset_peer``, ``timeout``, ``limit_data`` …) with
        its ``attributes`` (e.g. ``{"latency": 100}``); ``stream`` is ``downstream`` (towards the
        client) or ``upstream`` (towards the service).  Returns its name for :meth:`remove_toxic`."""
        toxic = name or f"{toxic_type}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {"name": toxic, "type": toxic_type, "stream": stream,
                                                        "toxicity": toxicity, "attributes": attributes or {}})
        return toxic

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def clear(self, proxy: str) -> None:
        """Remove every toxic of ``proxy`` and enable it again."""
        for toxic in self._call("GET", f"/proxies/{proxy}/toxics") or []:
            self.remove_toxic(proxy, toxic["name"])
        self.set_enabled(proxy, True)


SERVICE = Toxiproxy()
