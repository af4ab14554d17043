"""Azurite (the Azure Storage emulator) standing in for Azure Blob Storage; blob service only.

Why npm and not Docker: this workplace reaches package registries only, and Azurite is a plain
Node.js package.  ``dev/azurite-package.json`` pins ``azurite`` exactly and
``dev/azurite-package-lock.json`` pins its whole dependency tree (Azurite's transitive ``@azure/*``
packages move fast and newer ones raise their Node.js floor), so ``npm ci`` installs the same tree
on every machine.  ``node_modules`` lives in the git-ignored ``.cache/azurite``.

Why these server flags:

* ``--skipApiVersionCheck``: the Python SDK and object_store may send a newer ``x-ms-version`` than
  this Azurite release knows, which it would otherwise reject with 400;
* ``--loose``: ignore headers Azurite does not implement instead of failing the request;
* ``--disableTelemetry``: otherwise it keeps trying to reach an Application Insights endpoint, which
  is unreachable offline;
* ``--silent``: no per-request access log in ``.cache/run/azurite.log``.

Clients: ``AzureStore(container, use_emulator=True, client_options={"allow_http": True})`` reads
``AZURITE_BLOB_STORAGE_URL`` and uses the well-known ``devstoreaccount1`` account and key.  obstore
cannot create containers: use :func:`create_container` (azure-storage-blob, a dev dependency).
What obstore can do against Azurite is in ``docs/emulators.md`` (section Azurite).

Environment knobs: ``AZURITE_PORT`` (default 10000) and ``AZURITE_BLOB_STORAGE_URL`` to use an
Azurite running elsewhere (then nothing is started).

A second instance, :data:`OAUTH_SERVICE` (``azurite-oauth``), serves HTTPS with ``--oauth basic`` on
``AZURITE_OAUTH_PORT`` (default 10010): the only mode in which Azurite accepts Entra ID bearer
tokens, which is what a managed identity presents.  "Basic" means Azurite decodes the JWT without
checking its signature but refuses it unless ``aud`` is a storage audience
(``https://storage.azure.com``), ``iss`` starts with ``https://sts.windows.net/`` (or another Entra
issuer) and ``nbf``/``iat``/``exp`` make it valid now; bearer tokens over plain HTTP are refused.
Its certificate comes from :mod:`dev.certs` (names ``127.0.0.1`` and ``localhost``) in
``.cache/run/azurite-oauth-certs``; clients trust ``ca.pem`` (obstore: ``SSL_CERT_FILE``;
azure-identity/azure-storage-blob: ``REQUESTS_CA_BUNDLE`` or ``connection_verify``).  Shared-key
requests keep working there too, so fixtures can create containers with the well-known key.
The plain-HTTP instance on port 10000 is unaffected.  Started by the Azure function tests
(``tests/e2e/azure_fixtures.py``) or ``python -m dev.azurite start-oauth``;
``AZURITE_OAUTH_BLOB_STORAGE_URL`` (with ``AZURITE_OAUTH_CA_FILE``) points at one running elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dev import certs
from dev._common import CACHE, HOST, ROOT, RUN, Service, ServiceError, log, run

PACKAGE_JSON = ROOT / "dev" / "azurite-package.json"
PACKAGE_LOCK = ROOT / "dev" / "azurite-package-lock.json"
ACCOUNT = "devstoreaccount1"
#: Azurite's documented, public development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite(Service):
    name = "azurite"
    env_var = "AZURITE_BLOB_STORAGE_URL"
    start_timeout_s = 60.0

    @property
    def port(self) -> int:
        return int(os.environ.get("AZURITE_PORT", "10000"))

    @property
    def home(self) -> Path:
        return CACHE / "azurite"

    @property
    def binary(self) -> Path:
        return self.home / "node_modules" / ".bin" / "azurite-blob"

    @property
    def marker(self) -> Path:
        """Named after the lockfile's hash: editing the pins reinstalls, an unchanged lock costs nothing."""
        digest = hashlib.sha256(PACKAGE_JSON.read_bytes() + PACKAGE_LOCK.read_bytes()).hexdigest()[:12]
        return self.home / f"installed-{digest}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def install(self) -> None:
        if self.marker.exists() and self.binary.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise ServiceError("azurite: `npm` is missing; install Node.js 20+")
        t0 = time.monotonic()
        log(f"azurite: npm ci into {self.home}")
        self.home.mkdir(parents=True, exist_ok=True)
        for stale in self.home.glob("installed-*"):
            stale.unlink()
        shutil.copyfile(PACKAGE_JSON, self.home / "package.json")
        shutil.copyfile(PACKAGE_LOCK, self.home / "package-lock.json")
        # npm ci removes any existing node_modules first, so a half-finished install is redone whole.
        run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=self.home, what="azurite: npm ci")
        if not self.binary.exists():
            raise ServiceError(f"azurite: npm ci succeeded but {self.binary} is missing")
        self.marker.write_text(f"{PACKAGE_JSON.name} + {PACKAGE_LOCK.name}\n")
        log(f"azurite: installed in {time.monotonic() - t0:.0f}s")

    def prepare(self) -> None:
        # Start empty every time (no leftover containers from earlier runs), like the other emulators.
        if self.datadir.exists():
            shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        argv = [
            str(self.binary),
            "--blobHost", HOST,
            "--blobPort", str(self.port),
            "--location", str(self.datadir),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
        ]
        return argv, {}, self.datadir

    def _server_header(self) -> str | None:
        """``Server`` header of an unauthenticated container listing (Azurite answers 403 to it)."""
        url = f"{self.url}/{ACCOUNT}?comp=list"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                return str(resp.headers.get("Server", ""))
        except urllib.error.HTTPError as exc:
            return str(exc.headers.get("Server", "")) if exc.code < 500 else None
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        """Ready when the blob endpoint answers as Azurite (``Server: Azurite-Blob/…``), not any listener."""
        server = self._server_header()
        return bool(server and server.startswith("Azurite-Blob"))

    def after_start(self) -> None:
        log(f"{self.name}: {self._server_header()}")

    def endpoint(self) -> dict[str, str]:
        return {"AZURITE_BLOB_STORAGE_URL": self.url}


class AzuriteOAuth(Azurite):
    """A second Azurite: HTTPS, ``--oauth basic``; where managed-identity tokens are accepted.

    Same installation as :class:`Azurite`, its own port, data folder, pidfile and log.
    """

    name = "azurite-oauth"
    env_var = "AZURITE_OAUTH_BLOB_STORAGE_URL"

    @property
    def port(self) -> int:
        return int(os.environ.get("AZURITE_OAUTH_PORT", "10010"))

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def cert_files(self) -> certs.CertFiles:
        return certs.CertFiles((RUN / "azurite-oauth-certs").resolve())

    def prepare(self) -> None:
        super().prepare()
        certs.ensure(self.cert_files.directory)

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        argv, env, cwd = super().command()
        files = self.cert_files
        return [*argv, "--cert", str(files.broker_cert), "--key", str(files.broker_key), "--oauth", "basic"], env, cwd

    def _server_header(self) -> str | None:
        if not self.cert_files.ca.is_file():
            return None
        url = f"{self.url}/{ACCOUNT}?comp=list"
        context = ssl.create_default_context(cafile=str(self.cert_files.ca))
        try:
            with urllib.request.urlopen(url, timeout=2.0, context=context) as resp:
                return str(resp.headers.get("Server", ""))
        except urllib.error.HTTPError as exc:
            return str(exc.headers.get("Server", "")) if exc.code < 500 else None
        except (OSError, ValueError):
            return None

    def endpoint(self) -> dict[str, str]:
        return {self.env_var: self.url, "AZURITE_OAUTH_CA_FILE": str(self.cert_files.ca)}


def connection_string(base_url: str | None = None) -> str:
    """azure-storage-blob connection string for the emulator's well-known account."""
    url = (base_url or os.environ.get("AZURITE_BLOB_STORAGE_URL") or SERVICE.url).rstrip("/")
    scheme = "https" if url.startswith("https:") else "http"
    return (f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={url}/{ACCOUNT};")


def create_container(name: str, base_url: str | None = None, *, ca_file: str | None = None) -> None:
    """Create container ``name`` (3-63 chars, lowercase) - obstore has no create-container call.

    An existing container is not an error, so fixtures can call this unconditionally.  ``ca_file``:
    the CA to trust for an ``https://`` Azurite (:data:`OAUTH_SERVICE`).
    """
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    kw: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    client = BlobServiceClient.from_connection_string(connection_string(base_url), **kw)
    with contextlib.suppress(ResourceExistsError):
        client.create_container(name)


SERVICE = Azurite()
OAUTH_SERVICE = AzuriteOAuth()


def main(argv: list[str]) -> int:
    """``python -m dev.azurite start-oauth|stop-oauth|status-oauth``: the HTTPS + OAuth instance.

    (The plain instance is managed by ``python -m dev.services``.)
    """
    actions = {"start-oauth", "stop-oauth", "status-oauth"}
    if len(argv) != 1 or argv[0] not in actions:
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "start-oauth":
            OAUTH_SERVICE.install()
            OAUTH_SERVICE.start()
            for key, value in OAUTH_SERVICE.endpoint().items():
                print(f"{key}={value}")
        elif argv[0] == "stop-oauth":
            OAUTH_SERVICE.stop()
        else:
            print(f"{OAUTH_SERVICE.name}: {'ready' if OAUTH_SERVICE.ready() else 'stopped'}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
