"""A threaded HTTP(S) server on 127.0.0.1 that records what it was sent: the base of the tests'
stand-ins (a recording proxy, a metadata server, a managed-identity endpoint, Key Vault).

Why one base: each stand-in differs only in what it answers; starting the server on a free port in
a daemon thread, recording requests under a lock, TLS wrapping and a clean shutdown are the same.
Subclasses pass their ``BaseHTTPRequestHandler`` class; a handler reaches its stand-in through
``self.server.standin``.

Example::

    class Echo(LocalStandIn[str]):
        def __init__(self) -> None:
            standin = self
            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    standin.record(self.path)
                    self.send_response(204)
                    self.end_headers()
            super().__init__("echo", Handler)

    with Echo() as echo:
        urllib.request.urlopen(echo.url + "/x")
        assert echo.seen == ["/x"]
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Generic, Self, TypeVar

from dev._common import HOST

T = TypeVar("T")


class LocalStandIn(Generic[T]):
    """A server on ``127.0.0.1:<free port>`` in a daemon thread; records ``T``s; a context manager."""

    def __init__(self, name: str, handler: type[BaseHTTPRequestHandler], *,
                 context: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._seen: list[T] = []
        self._server = ThreadingHTTPServer((HOST, 0), handler)
        self._server.daemon_threads = True
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.standin = self  # type: ignore[attr-defined]
        self._scheme = "https" if context is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self.host}"

    @property
    def seen(self) -> list[T]:
        with self._lock:
            return list(self._seen)

    def record(self, item: T) -> None:
        with self._lock:
            self._seen.append(item)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
