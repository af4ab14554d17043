"""A transparent recording HTTP proxy, put in front of fake-gcs-server to see what obstore sends.

Why it exists: no GCS stand-in that can be installed here executes obstore's XML-API writes (see
``docs/emulators.md``), so the only part of the GCS write path that can be checked locally is the
request itself: that create-if-absent carries ``x-goog-if-generation-match: 0``, update-if-match the
generation, copy-if-absent ``x-goog-copy-source`` plus the same condition, and that large uploads
start an XML multipart upload.  Real GCS documents what those requests do; this proxy only records
them.  It is deliberately not an emulator: every request is forwarded unchanged (apart from
hop-by-hop headers) to the real fake-gcs-server, whose answer goes back unchanged, so a test using
it can claim nothing about storage semantics, only about the request shape.

Example::

    with RecordingProxy("http://127.0.0.1:4443") as proxy:
        store = open_store(f"gs://bucket/pfx?base_url={proxy.url}&...")
        ...
        [req] = proxy.matching("PUT")
        assert req.headers["x-goog-if-generation-match"] == "0"
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from dev.http_standin import LocalStandIn

#: Headers that describe one connection, not the request; never forwarded (RFC 9110 §7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Recorded:
    """One request as the client sent it, and the status the upstream server answered."""

    method: str
    #: The path with percent-escapes decoded, e.g. ``/bucket/pfx/key`` (object_store escapes ``/``).
    path: str
    query: str
    #: Header names lower-cased.
    headers: dict[str, str]
    body_size: int
    status: int


class RecordingProxy(LocalStandIn[Recorded]):
    """Forward every request to ``upstream`` and keep a list of what was sent; a context manager."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"RecordingProxy: upstream must be an http:// URL, got {upstream!r}")
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        super().__init__("gcs-recorder", self._handler_class())

    @property
    def records(self) -> list[Recorded]:
        return self.seen

    def matching(self, method: str, path_suffix: str = "") -> list[Recorded]:
        """Recorded requests with this method whose decoded path ends with ``path_suffix``."""
        return [r for r in self.records if r.method == method and r.path.endswith(path_suffix)]

    # -- the handler ---------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 so that reqwest's keep-alive connections behave as they do against a real server.
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # the test asserts on the records; no per-request noise on stderr

            def _forward(self) -> None:
                body = self._read_body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(proxy._upstream_host, proxy._upstream_port, timeout=60)
                try:
                    # Host is set by http.client to the upstream address: fake-gcs-server routes XML-API
                    # paths only when Host equals its -public-host.
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    resp = upstream.getresponse()
                    payload = resp.read()
                    status, reason, resp_headers = resp.status, resp.reason, resp.getheaders()
                finally:
                    upstream.close()
                split = urlsplit(self.path)
                proxy.record(Recorded(
                    method=self.command, path=unquote(split.path), query=split.query,
                    headers={k.lower(): v for k, v in self.headers.items()}, body_size=len(body), status=status))
                self.send_response(status, reason)
                for name, value in resp_headers:
                    if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()  # the blank line after the last chunk (no trailers sent)
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _forward

        return Handler
