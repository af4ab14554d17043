"""Local stand-ins for the Azure side of the function app, and a way to invoke it as the host would.

* :class:`ManagedIdentityStandIn`: the App Service / Functions managed-identity endpoint on
  127.0.0.1 (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``; ``GET ?resource=...&api-version=2019-08-01``
  with ``X-IDENTITY-HEADER``).  It hands out JWTs shaped like Entra ID access tokens (``aud`` = the
  resource, ``iss`` = ``https://sts.windows.net/<tenant>/``, ``nbf``/``iat``/``exp``, ``sub``/``oid`` =
  the identity) but **unsigned** (``alg: none``): the two local consumers check claims, not
  signatures: Azurite's ``--oauth basic`` mode and the Kafka broker's unsecured JWT validator (which
  *requires* ``alg: none`` and an empty signature).  ``style="rs256"`` hands out tokens shaped like
  real Entra tokens (``alg: RS256`` with a signature part) to show what that validator does with
  them.  Every request is recorded, and a request without the right header is refused (403).
* :class:`KeyVaultStandIn`: ``GET /secrets/<name>[/<version>]?api-version=...`` over HTTPS with a
  certificate for ``kb-test.vault.azure.net``, answering only to a bearer token the identity
  stand-in issued for ``https://vault.azure.net``; reached through :class:`ConnectProxy` (an HTTP
  CONNECT proxy the function finds in ``HTTPS_PROXY``), so the function's Key Vault client runs
  unchanged against a real Key Vault host name.
* :func:`invoke`: what the Functions host and the Python worker do for a timer tick: find the
  function in ``app.get_functions()``, decode the host's timer JSON with the library's own
  ``TimerRequestConverter``, call the user function.

These stand in for the *protocols* only: nothing is signed and no role assignment is checked.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib
import ipaddress
import json
import os
import secrets
import select
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dev.http_standin import LocalStandIn

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "functions" / "azure"
HOST = "127.0.0.1"
TENANT = "72f988bf-0000-4000-8000-00000000c0de"
#: Object (principal) id and client id of the stand-in's user-assigned identity.
PRINCIPAL_ID = "5e1f0b9a-0000-4000-8000-0000000000a1"
CLIENT_ID = "c11e4700-0000-4000-8000-0000000000c1"
VAULT_HOST = "kb-test.vault.azure.net"
VAULT_RESOURCE = "https://vault.azure.net"


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, list[str]]
    #: lower-cased names
    headers: dict[str, str]

    @property
    def resource(self) -> str | None:
        values = self.query.get("resource")
        return values[0] if values else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (no verification: the stand-ins' tokens are unsigned)."""
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


class _Server(LocalStandIn["Seen"]):
    """A threaded HTTP(S) server on 127.0.0.1 that records requests (``dev.http_standin``)."""

    def __init__(self, name: str, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None = None) -> None:
        super().__init__(name, handler, context=context)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _seen(self) -> Seen:
        split = urlsplit(self.path)
        seen = Seen(split.path, parse_qs(split.query), {k.lower(): v for k, v in self.headers.items()})
        self.server.standin.record(seen)  # type: ignore[attr-defined]
        return seen


class ManagedIdentityStandIn(_Server):
    """The managed-identity endpoint the Functions platform offers (App Service protocol 2019-08-01)."""

    def __init__(self, *, token_lifetime_seconds: int = 3600) -> None:
        self.header_secret = secrets.token_urlsafe(24)
        self.token_lifetime_seconds = token_lifetime_seconds
        #: "unsigned" (alg none; what the local Azurite and Kafka accept) or "rs256" (shaped like Entra's).
        self.style = "unsigned"
        #: Every token handed out, by resource (tests look for them in logs and in later requests).
        self.issued: dict[str, list[str]] = {}
        super().__init__("managed-identity-standin", self._handler())

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"http://{HOST}:{self.port}/msi/token", "IDENTITY_HEADER": self.header_secret}

    def token_requests(self, resource: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == "/msi/token" and (resource is None or s.resource == resource)]

    def mint(self, resource: str) -> tuple[str, int]:
        now = int(time.time())
        expires = now + self.token_lifetime_seconds
        claims = {"aud": resource, "iss": f"https://sts.windows.net/{TENANT}/", "iat": now, "nbf": now, "exp": expires,
                  "sub": PRINCIPAL_ID, "oid": PRINCIPAL_ID, "appid": CLIENT_ID, "tid": TENANT, "idtyp": "app",
                  "uti": uuid.uuid4().hex, "ver": "1.0"}
        if self.style == "rs256":
            header = {"alg": "RS256", "typ": "JWT", "kid": "standin-key"}
            signature = _b64url(secrets.token_bytes(256))
        else:
            header, signature = {"alg": "none", "typ": "JWT"}, ""
        token = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}.{signature}"
        self.issued.setdefault(resource, []).append(token)
        return token, expires

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(_Handler):
            def do_GET(self) -> None:
                standin: ManagedIdentityStandIn = self.server.standin  # type: ignore[attr-defined]
                seen = self._seen()
                if seen.path != "/msi/token":
                    return self._reply(404, {"error": "not found"})
                if seen.headers.get("x-identity-header") != standin.header_secret:
                    return self._reply(403, {"error": "forbidden", "error_description": "X-IDENTITY-HEADER"})
                if seen.query.get("api-version") != ["2019-08-01"] or not seen.resource:
                    return self._reply(400, {"error": "invalid_request"})
                client_id = (seen.query.get("client_id") or [CLIENT_ID])[0]
                if client_id != CLIENT_ID:
                    return self._reply(400, {"error": "invalid_request", "error_description": "unknown identity"})
                token, expires = standin.mint(seen.resource)
                return self._reply(200, {"access_token": token, "expires_on": str(expires), "resource": seen.resource,
                                         "token_type": "Bearer", "client_id": CLIENT_ID})

        return Handler


class KeyVaultStandIn(_Server):
    """Key Vault's ``GET /secrets/<name>[/<version>]`` over HTTPS, for tokens the identity stand-in issued."""

    def __init__(self, identity: ManagedIdentityStandIn, context: ssl.SSLContext) -> None:
        self.identity = identity
        #: name -> value
        self.secrets: dict[str, str] = {}
        super().__init__("key-vault-standin", self._handler(), context)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(_Handler):
            def do_GET(self) -> None:
                vault: KeyVaultStandIn = self.server.standin  # type: ignore[attr-defined]
                seen = self._seen()
                auth = seen.headers.get("authorization", "")
                token = auth.removeprefix("Bearer ")
                if not auth.startswith("Bearer ") or token not in vault.identity.issued.get(VAULT_RESOURCE, []):
                    return self._reply(401, {"error": {"code": "Unauthorized", "message": "AKV10000"}})
                if jwt_claims(token)["exp"] < time.time():
                    return self._reply(401, {"error": {"code": "Unauthorized", "message": "expired"}})
                parts = seen.path.strip("/").split("/")
                if len(parts) not in (2, 3) or parts[0] != "secrets" or not seen.query.get("api-version"):
                    return self._reply(400, {"error": {"code": "BadParameter"}})
                if parts[1] not in vault.secrets:
                    return self._reply(404, {"error": {"code": "SecretNotFound", "message": "not found"}})
                version = parts[2] if len(parts) == 3 else "0123456789abcdef0123456789abcdef"
                return self._reply(200, {"value": vault.secrets[parts[1]],
                                         "id": f"https://{VAULT_HOST}/secrets/{parts[1]}/{version}",
                                         "attributes": {"enabled": True}})

        return Handler


class ConnectProxy:
    """An HTTP CONNECT proxy that sends ``routes`` host:port targets to local ports (others: 403)."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.connects: list[str] = []
        self._sock = socket.create_server((HOST, 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="connect-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._sock.getsockname()[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _accept(self) -> None:
        self._sock.settimeout(0.05)  # closing a socket does not wake a blocked accept(): poll the flag
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.connects.append(target)
            port = self.routes.get(target)
            if method != "CONNECT" or port is None:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            with contextlib.closing(socket.create_connection((HOST, port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(client, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    while True:
        ready, _, _ = select.select([a, b], [], [], 30)
        if not ready:
            return
        for src in ready:
            data = src.recv(65536)
            if not data:
                return
            (b if src is a else a).sendall(data)


def vault_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for :data:`VAULT_HOST`: (CA file, server context)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-backup test Key Vault CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, VAULT_HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(VAULT_HOST),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = directory / "vault-ca.pem", directory / "vault.pem", directory / "vault-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


# -- Azurite with HTTPS and OAuth ------------------------------------------------------------------------
@dataclass(frozen=True)
class AzuriteOAuth:
    url: str
    ca_file: str

    @property
    def account_url(self) -> str:
        from dev.azurite import ACCOUNT

        return f"{self.url}/{ACCOUNT}"


@pytest.fixture(scope="session")
def azurite_oauth() -> Iterator[AzuriteOAuth]:
    """The HTTPS + ``--oauth basic`` Azurite (dev/azurite.py ``OAUTH_SERVICE``), started once per session."""
    from dev.azurite import OAUTH_SERVICE

    endpoint, started = OAUTH_SERVICE.ensure()
    ca_file = endpoint.get("AZURITE_OAUTH_CA_FILE") or os.environ.get("AZURITE_OAUTH_CA_FILE")
    if not ca_file:
        pytest.skip("AZURITE_OAUTH_BLOB_STORAGE_URL points elsewhere but AZURITE_OAUTH_CA_FILE is not set")
    try:
        yield AzuriteOAuth(endpoint[OAUTH_SERVICE.env_var].rstrip("/"), ca_file)
    finally:
        if started and not os.environ.get("KAFKA_BACKUP_KEEP_SERVICES"):
            OAUTH_SERVICE.stop()


# -- the function app, as the host loads and calls it ----------------------------------------------------
#: Loggers whose configuration function_app.configure_logging() changes (restored after each test).
_LOGGERS = ("kafka_backup", "kafka", "azure.core.pipeline.policies.http_logging_policy")


@pytest.fixture
def function_app() -> Iterator[ModuleType]:
    """``functions/azure/function_app.py`` imported as the worker does (its folder on ``sys.path``).

    The module configures logging when imported; that is re-applied for each test and undone
    afterwards, so other tests in the session see the engine's loggers as they were.  The cached
    managed-identity credentials are dropped, so each test's identity endpoint is really asked.
    """
    saved = {name: (logging_state(name)) for name in _LOGGERS}
    if str(APP_DIR) not in sys.path:  # appended: the folder's build.py must not shadow a `build` package
        sys.path.append(str(APP_DIR))
    module = importlib.import_module("function_app")
    module.configure_logging()
    importlib.import_module("entra_id").managed_identity.cache_clear()
    try:
        yield module
    finally:
        importlib.import_module("entra_id").managed_identity.cache_clear()
        for name, state in saved.items():
            restore_logging(name, state)


def logging_state(name: str) -> tuple[int, bool, list[Any]]:
    import logging

    logger = logging.getLogger(name)
    return logger.level, logger.propagate, list(logger.handlers)


def restore_logging(name: str, state: tuple[int, bool, list[Any]]) -> None:
    import logging

    logger = logging.getLogger(name)
    logger.setLevel(state[0])
    logger.propagate = state[1]
    logger.handlers[:] = state[2]


def host_timer_payload(*, past_due: bool = False) -> str:
    """The JSON the Functions host passes for a timer trigger (TimerInfo, as the .NET host serializes it)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    last = now - dt.timedelta(minutes=45 if past_due else 15)
    status = {"Last": last.isoformat(), "Next": (last + dt.timedelta(minutes=15)).isoformat(),
              "LastUpdated": last.isoformat()}
    return json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due})


_INDEXED: dict[int, list[Any]] = {}


def indexed_functions(app_module: ModuleType) -> list[Any]:
    """``app.get_functions()``, called once per app as the worker does (a second call raises: the
    library then sees every function name twice)."""
    key = id(app_module.app)
    if key not in _INDEXED:
        _INDEXED[key] = app_module.app.get_functions()
    return _INDEXED[key]


def invoke(app_module: ModuleType, *, past_due: bool = False) -> tuple[float, BaseException | None]:
    """One timer tick as the worker handles it: (seconds the call took, what it raised or None)."""
    from azure.functions.meta import Datum
    from azure.functions.timer import TimerRequestConverter

    (function,) = [f for f in indexed_functions(app_module) if f.get_function_name() == "kafka_backup"]
    timer = TimerRequestConverter.decode(Datum(type="json", value=host_timer_payload(past_due=past_due)),
                                         trigger_metadata={})
    started = time.monotonic()
    try:
        function.get_user_function()(timer)
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None
