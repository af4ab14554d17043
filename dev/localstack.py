"""LocalStack (S3, STS, IAM, Secrets Manager, SSM, EventBridge, Scheduler) without Docker.

Why it looks like this:

* The open-source LocalStack repository was archived in 2026 and newer releases need an account
  token and network access, and ``localstack-core`` 4.14+ uses PEP 695 syntax that Python 3.11
  cannot parse.  ``localstack-core[runtime]==4.13.1`` is the newest release that runs here.
* Its dependency pins clash with the project's environment, so it lives in its **own** virtualenv
  under ``.cache/localstack/venv``.  Four extra pins stop dependency drift from breaking it:
  newer cbor2 lacks ``cbor2._decoder``, newer pyOpenSSL lacks ``X509.add_extensions``, Twisted
  needs service-identity, and cryptography must match pyOpenSSL 24.2.
* It runs in host mode (``python -m localstack.runtime.main``) with everything that would phone
  home or need root switched off: no analytics events, no SSL certificate download, no DNS server
  (it would try to bind UDP port 53), no persistence.  All its files go below ``datadir``.
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

LOCALSTACK_VERSION = "4.13.1"
#: Pins that keep localstack-core 4.13.1 importable; see the module docstring for why each is needed.
PINS = ("cbor2==5.6.5", "cryptography==43.0.3", "pyopenssl==24.2.1", "service-identity==24.2.0")
SERVICES = "s3,sts,secretsmanager,ssm,iam,events,scheduler"
#: Python that creates the separate venv; 4.13.1 is known to work on 3.11 (3.12+ untested here).
BASE_PYTHON = os.environ.get("LOCALSTACK_PYTHON", "python3.11")


class LocalStack(Service):
    name = "localstack"
    env_var = "AWS_ENDPOINT_URL"
    # Cold start measured at ~6 s with eager loading; generous for slow CI machines.
    start_timeout_s = 180.0

    @property
    def port(self) -> int:
        return int(os.environ.get("LOCALSTACK_PORT", "4566"))

    @property
    def home(self) -> Path:
        return CACHE / "localstack"

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def marker(self) -> Path:
        """Written only after a complete install, so an interrupted pip run is redone next time."""
        return self.home / f"installed-{LOCALSTACK_VERSION}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def install(self) -> None:
        if self.marker.exists() and self.python.exists():
            return
        base = shutil.which(BASE_PYTHON)
        if base is None:
            raise ServiceError(f"localstack: {BASE_PYTHON} not found; set LOCALSTACK_PYTHON to a Python 3.11")
        t0 = time.monotonic()
        log(f"localstack: installing localstack-core {LOCALSTACK_VERSION} into {self.venv} (about a minute)")
        if self.venv.exists():
            shutil.rmtree(self.venv)  # a half-built venv from an interrupted install
        self.home.mkdir(parents=True, exist_ok=True)
        run([base, "-m", "venv", str(self.venv)], what="localstack: create venv")
        run([str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"localstack-core[runtime]=={LOCALSTACK_VERSION}", *PINS], what="localstack: pip install")
        # Importing the runtime catches a broken dependency set now instead of at first start.
        run([str(self.python), "-c", "import localstack.runtime.main, localstack.services.s3.provider"],
            what="localstack: import check")
        self.marker.write_text(f"localstack-core[runtime]=={LOCALSTACK_VERSION} {' '.join(PINS)}\n")
        log(f"localstack: installed in {time.monotonic() - t0:.0f}s")

    def prepare(self) -> None:
        # No persistence: every start begins empty, so stale buckets from an earlier run cannot leak
        # into tests.  The tree is recreated by LocalStack itself.
        if self.datadir.exists():
            shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        env = {
            "GATEWAY_LISTEN": f"{HOST}:{self.port}",
            # Host name LocalStack writes into URLs it returns (e.g. S3 Location, SQS queue URLs);
            # the default localhost.localstack.cloud needs DNS that is not available offline.
            "LOCALSTACK_HOST": f"{HOST}:{self.port}",
            "SERVICES": SERVICES,
            # Load the providers before "Ready." so the health probe means "S3 answers now".  Lazy
            # loading reports ready after ~1 s but stalls the first S3 call for ~5 s instead.
            "EAGER_SERVICE_LOADING": "1",
            # LocalStack guesses "in Docker" from /.dockerenv and cgroups, which is true inside a CI
            # or sandbox container; it would then write to /var/lib/localstack, /etc/localstack and
            # /tmp/localstack and ignore FILESYSTEM_ROOT.  We always run it as a host process.
            "OVERRIDE_IN_DOCKER": "0",
            # Offline and quiet: no analytics, no certificate download, no DNS server (it binds
            # UDP/53 and resolves upstream), no persistence.
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "PERSISTENCE": "0",
            "FILESYSTEM_ROOT": str(self.datadir),
            "CLEAR_TMP_FOLDER": "1",
            "DEBUG": "0",
            # Per-request lines ("AWS s3.PutObject => 200") flood the log during tests; LS_LOG=info
            # in the caller's environment brings them back for debugging.
            "LS_LOG": os.environ.get("LS_LOG", "warn"),
            # A developer's ~/.localstack/default.env profile would be merged into the config otherwise.
            "CONFIG_DIR": str(self.home / "config"),
            "PYTHONUNBUFFERED": "1",
        }
        return [str(self.python), "-m", "localstack.runtime.main"], env, self.home

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=2.0) as resp:
                data = json.load(resp)
        except (OSError, ValueError, urllib.error.URLError):
            return None
        return data if isinstance(data, dict) else None

    def ready(self) -> bool:
        """Ready only once S3 reports available/running, not merely when the gateway port answers."""
        health = self.health()
        if not health:
            return False
        services = health.get("services")
        return isinstance(services, dict) and services.get("s3") in {"available", "running"}

    def after_start(self) -> None:
        health = self.health() or {}
        log(f"localstack: version {health.get('version', '?')} edition {health.get('edition', '?')}")

    def endpoint(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


SERVICE = LocalStack()
