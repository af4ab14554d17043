"""fake-gcs-server (github.com/fsouza/fake-gcs-server) standing in for Google Cloud Storage.

Why it is built with ``go install``: the project ships Docker images and release tarballs, but this
workplace reaches package registries only, and the Go module proxy serves the module source.  The
binary is compiled once into ``.cache/gcs/bin/<version>`` (1.5-2 minutes on 2 cores).  The module
download and build caches go to ``.cache/gcs`` during the build and are deleted afterwards
(about 700 MB of Google Cloud SDK sources that a static binary does not need).

Why these server flags: ``-scheme http`` (plain HTTP, so obstore needs ``allow_http``), and
``-public-host 127.0.0.1:<port>``, which is required: fake-gcs-server routes XML-API
paths (``/<bucket>/<object>``, the only API object_store speaks) only when the request's ``Host``
equals the public host.  Any other Host is taken as a virtual-hosted *bucket name*.
``-filesystem`` backend below ``datadir`` keeps large objects out of RAM; ``datadir`` is wiped
on every start, like the other emulators.

Buckets: obstore cannot create buckets.  Use :func:`create_bucket`, i.e. the JSON API
``POST /storage/v1/b?project=test`` with body ``{"name": "<bucket>"}`` (no credentials needed).

⚠️ What obstore 0.12.1 can do against it (details in ``docs/emulators.md``): **reads only**.
``get``/range/``head``/``list``/``list_with_delimiter``/``delete`` work, but every write
(``put`` in any mode, ``copy``, ``rename``, multipart, ``open_writer``) gets
``400 invalid uploadType``: fake-gcs-server has no XML-API object upload (upstream issue #331).
Seed objects through the JSON API instead (:func:`upload_object`).  It is still the most faithful
GCS stand-in obtainable here: newer fake-gcs-server code, its XML-API forks and Google's
storage-testbench are not served by any reachable registry, and the PyPI ``gcp-storage-emulator``
breaks on obstore's reads as well (no ``ETag``/``Last-Modified``, no HEAD/DELETE/list, and a 501
for any bucket name with ``-``, which obstore percent-encodes).  ``docs/emulators.md`` has the
comparison; ``dev/gcs_recorder.py`` records the write requests obstore sends.

Credentials: open stores with ``service_account_path=`` a file from :func:`emulator_credentials`.
Without it obstore asks the GCE metadata server for a token before every upload, even with
``skip_signature``, and that server is off this machine.

Environment knobs: ``GCS_PORT`` (default 4443), ``GCS_BACKEND`` (``filesystem`` or ``memory``),
``GCS_LOG_LEVEL`` (default ``warn``), ``FAKE_GCS_VERSION`` (module version to build), and
``GCS_BASE_URL`` to use a server running elsewhere (then nothing is started).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from dev._common import CACHE, HOST, Service, ServiceError, log, run

MODULE = "github.com/fsouza/fake-gcs-server"
#: Newest version the Go module proxy listed on 2026-11-27 (``go list -m -versions``).
DEFAULT_VERSION = "v1.56.1"


class FakeGCS(Service):
    name = "gcs"
    env_var = "GCS_BASE_URL"
    start_timeout_s = 60.0

    @property
    def version(self) -> str:
        return os.environ.get("FAKE_GCS_VERSION", DEFAULT_VERSION)

    @property
    def port(self) -> int:
        return int(os.environ.get("GCS_PORT", "4443"))

    @property
    def backend(self) -> str:
        return os.environ.get("GCS_BACKEND", "filesystem")

    @property
    def home(self) -> Path:
        return CACHE / "gcs"

    @property
    def binary(self) -> Path:
        # One binary per version, so switching FAKE_GCS_VERSION never runs a stale build.
        return self.home / "bin" / self.version / "fake-gcs-server"

    @property
    def marker(self) -> Path:
        """Written only after a complete build, so an interrupted ``go install`` is redone."""
        return self.home / f"installed-{self.version}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def install(self) -> None:
        if self.marker.exists() and self.binary.exists():
            return
        if shutil.which("go") is None:
            raise ServiceError("gcs: the `go` command is missing; fake-gcs-server is built from source")
        t0 = time.monotonic()
        log(f"gcs: building {MODULE}@{self.version} (takes a few minutes on 2 cores)")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        env = {
            "GOBIN": str(self.binary.parent),
            "GOMODCACHE": str(self.home / "gomod"),
            "GOCACHE": str(self.home / "gobuild"),
            # A static binary: no C toolchain needed, and nothing to relink when libc changes.
            "CGO_ENABLED": "0",
        }
        # -modcacherw: module-cache files are read-only by default, which makes `rm -rf .cache` fail.
        # (A flag, not GOFLAGS, so the machine's own GOFLAGS such as -buildvcs=false still apply.)
        run(["go", "install", "-modcacherw", f"{MODULE}@{self.version}"], env=env, cwd=self.home,
            what="gcs: go install")
        if not self.binary.exists():
            raise ServiceError(f"gcs: go install succeeded but {self.binary} is missing")
        # Both caches only serve a rebuild of this exact version (~700 MB of module sources); the
        # static binary needs neither.  -modcacherw above is what lets rmtree delete the module cache.
        for cache in ("gomod", "gobuild"):
            shutil.rmtree(self.home / cache, ignore_errors=True)
        self.marker.write_text(f"{MODULE}@{self.version}\n")
        log(f"gcs: installed in {time.monotonic() - t0:.0f}s")

    @property
    def root(self) -> Path:
        return self.datadir / "root"

    def prepare(self) -> None:
        # Start empty every time so runs cannot see each other's buckets and objects.
        if self.datadir.exists():
            shutil.rmtree(self.datadir, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        argv = [
            str(self.binary),
            "-scheme", "http",
            "-host", HOST,
            "-port", str(self.port),
            # XML-API routes match only when the request's Host equals the public host (default
            # storage.googleapis.com); with any other Host the host itself is taken as a bucket name.
            "-public-host", f"{HOST}:{self.port}",
            # Returned in the Location of resumable uploads; the default is the bind address.
            "-external-url", self.url,
            "-backend", self.backend,
            "-filesystem-root", str(self.root),
            "-log-level", os.environ.get("GCS_LOG_LEVEL", "warn"),
        ]
        return argv, {}, self.datadir

    def ready(self) -> bool:
        """The JSON bucket listing answers 200 only from fake-gcs-server itself, not any listener."""
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2.0) as resp:
                return bool(resp.status == 200)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def after_start(self) -> None:
        log(f"gcs: fake-gcs-server {self.version} ({self.backend} backend)")

    def endpoint(self) -> dict[str, str]:
        return {"GCS_BASE_URL": self.url}


def create_bucket(name: str, base_url: str | None = None) -> None:
    """Create bucket ``name`` through the JSON API (obstore has no create-bucket call).

    An existing bucket is not an error (409), so fixtures can call this unconditionally.
    """
    url = (base_url or os.environ.get("GCS_BASE_URL") or SERVICE.url).rstrip("/")
    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(f"{url}/storage/v1/b?project=test", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10.0):
            return
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise ServiceError(f"gcs: creating bucket {name!r} failed: HTTP {exc.code} {exc.read()[:500]!r}") from exc


def emulator_credentials(path: Path, base_url: str | None = None) -> Path:
    """Write a service-account key file that makes obstore send no credentials at all; return ``path``.

    Why it is needed: object_store 0.14 fetches an OAuth token before every *upload*, even with
    ``skip_signature`` (that flag is consulted on reads and deletes only).  With no credentials
    configured the fetch goes to the GCE metadata server (``metadata.google.internal``, then
    ``169.254.169.254``), i.e. off this machine.  A key with ``disable_oauth`` makes every request
    carry an empty bearer token and no token request is ever made; object_store's own tests against
    fake-gcs-server use the same trick.  The key holds no secret (empty private key); open a store
    with ``service_account_path=<path>``.  A ``base_url`` given to the store wins over the file's
    ``gcs_base_url`` (so one file serves a recording proxy too).
    """
    url = (base_url or os.environ.get("GCS_BASE_URL") or SERVICE.url).rstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    # private_key_id must be present (serde rejects the file without it), empty is fine.
    path.write_text(json.dumps({"gcs_base_url": url, "disable_oauth": True, "client_email": "",
                                "private_key": "", "private_key_id": ""}))
    return path


def upload_object(bucket: str, name: str, data: bytes, base_url: str | None = None) -> None:
    """Seed an object through the JSON API (obstore's XML-API writes are not served here)."""
    from urllib.parse import quote

    url = (base_url or os.environ.get("GCS_BASE_URL") or SERVICE.url).rstrip("/")
    request = urllib.request.Request(
        f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quote(name, safe='')}", data=data,
        method="POST", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30.0):
        return


SERVICE = FakeGCS()
