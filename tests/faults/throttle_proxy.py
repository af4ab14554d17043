"""A small HTTP reverse proxy that answers storage errors for a configured stretch of requests.

Why: Toxiproxy works on TCP connections, but throttling is an HTTP answer (S3's ``503 SlowDown``,
a ``500 InternalError``) that a client must retry with backoff.  This proxy forwards every request
to LocalStack unchanged (the engine sees only a storage URL with this proxy as its endpoint) except
the ones a rule selects, which get the error answer instead and are never forwarded.  Rules are
set by the test while a run is going on; every request is recorded, so a test can assert what was
failed and what was retried.

Example::

    with ThrottleProxy("127.0.0.1:4566") as proxy:
        proxy.fail(503, count=4, method="PUT", path=r"/segments/")
        ... open_store(f"s3://bucket?endpoint={proxy.url}&path_style=true&allow_http=true ...")
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
_S3_CODES = {500: ("InternalError", "We encountered an internal error. Please try again."),
             503: ("SlowDown", "Please reduce your request rate.")}


@dataclass
class Rule:
    """Answer ``status`` to the next ``count`` requests matching ``method`` and ``path`` (a regex).

    ``forward``: send the request upstream first and answer ``status`` anyway, i.e. the write
    landed but its answer was lost (what a reset connection does to a successful request).
    """

    status: int
    count: int
    method: str | None = None
    path: str | None = None
    forward: bool = False
    served: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.served < self.count and (self.method is None or method == self.method)
                and (self.path is None or re.search(self.path, path) is not None))


@dataclass
class Seen:
    method: str
    path: str
    status: int
    injected: bool
    at: float = field(default_factory=time.monotonic)


class ThrottleProxy:
    def __init__(self, upstream: str, *, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real endpoint (obstore pools connections)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()  # always drained, so the connection stays usable after an error
                rule = proxy._take(self.command, self.path)
                if rule is not None and rule.forward:
                    self._forward(body, reply=False)
                if rule is not None:
                    code, message = _S3_CODES.get(rule.status, ("InternalError", "injected"))
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                               f"<Message>{message}</Message></Error>").encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    proxy._record(Seen(self.command, self.path, rule.status, True))
                    return
                self._forward(body, reply=True)

            def _forward(self, body: bytes, *, reply: bool) -> None:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
                    if body or self.command in {"PUT", "POST"}:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if not reply:
                        return
                    self.send_response(resp.status, resp.reason)
                    for key, value in resp.getheaders():
                        if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    if self.command == "HEAD":
                        length = resp.getheader("Content-Length")
                        if length is not None:
                            self.send_header("Content-Length", length)
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    proxy._record(Seen(self.command, self.path, resp.status, False))
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="throttle-proxy", daemon=True)
        self._thread.start()

    def fail(self, status: int, count: int, *, method: str | None = None, path: str | None = None,
             forward: bool = False) -> Rule:
        """Answer ``status`` to the next ``count`` matching requests (``path`` is a regex)."""
        rule = Rule(status, count, method, path, forward)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()

    def injected(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.injected]

    def _take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.served += 1
                    return rule
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ThrottleProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
