"""The function's Google identity, three ways: GCS, Managed Kafka (OAUTHBEARER) and Secret Manager.

Everything goes through google-auth's Application Default Credentials, so one mechanism serves
every place the function runs: on Cloud Run it is the metadata server (which google-auth finds at
``GCE_METADATA_HOST`` / ``GCE_METADATA_IP`` when those are set, as the tests do); elsewhere a key
file, workload identity federation or ``gcloud auth application-default login``.  No token is
fetched by hand, and none is ever logged.

* :class:`StorageCredentials`: obstore's own ``GoogleCredentialProvider`` for the GCS store.
* :class:`ManagedKafkaTokenProvider`: ``kafka.sasl.token_provider: "gcp_identity:ManagedKafkaTokenProvider"``
  for Google Cloud Managed Service for Apache Kafka.
* :class:`SecretManagerResolver`: ``secretref:gcp-secretmanager:projects/P/secrets/S/versions/V``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import google.auth
from google.auth.transport.requests import AuthorizedSession, Request
from kafka_backup import ConfigError
from kafka_backup.oauth import OPTIONS_FIELD, TokenProvider

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from obstore.auth.google import GoogleCredentialProvider

__all__ = ["ManagedKafkaTokenProvider", "SecretManagerResolver", "StorageCredentials", "managed_kafka_token"]

#: What Google's own Managed Kafka login handler asks for (GcpLoginCallbackHandler); IAM narrows it.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SECRET_MANAGER_URL = "https://secretmanager.googleapis.com"
#: gcloud's name for a Secret Manager endpoint override (private endpoints; the tests' stand-in).
SECRET_MANAGER_URL_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER"
_SECRET_NAME = re.compile(r"projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+")
#: google-auth credentials objects are not safe to refresh from two threads at once (kafka-python's
#: IO thread and a secret look-up may both need a token).
_REFRESH_LOCK = threading.Lock()


@functools.cache
def _adc() -> Credentials:
    """The instance's Application Default Credentials, found once (the metadata ping costs a round trip)."""
    credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials


def _fresh(credentials: Credentials) -> Credentials:
    with _REFRESH_LOCK:
        if not credentials.valid:
            credentials.refresh(Request())  # type: ignore[no-untyped-call]
    return credentials


class StorageCredentials:
    """obstore's google-auth provider for GCSStore, built on first use, with its own credentials.

    Why google-auth and not obstore's built-in metadata lookup (which honours the same
    ``GCE_METADATA_*`` variables): it covers every other ADC source too (key files, workload identity
    federation, impersonation), and it is the library the Kafka token and the secrets use.
    Why on first use: a run whose storage is not GCS never needs Google credentials, and the
    ADC discovery (a metadata ping) then costs nothing.  obstore caches each token until shortly
    before it expires and calls again then.
    """

    def __init__(self) -> None:
        self._provider: GoogleCredentialProvider | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._provider is None:
                from obstore.auth.google import GoogleCredentialProvider

                credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
                self._provider = GoogleCredentialProvider(credentials=credentials)
            return self._provider()


def managed_kafka_token(access_token: str, principal: str, expires_at: float, *, now: float | None = None) -> str:
    """The SASL/OAUTHBEARER token Managed Service for Apache Kafka accepts: a JWT-shaped wrapper.

    The format is the one Google's own clients build (github.com/googleapis/managedkafka:
    ``kafka-java-auth/.../GcpLoginCallbackHandler.java`` ``getKafkaAccessToken`` and
    ``kafka-auth-local-server/kafka_gcp_credentials_server.py`` ``get_kafka_access_token``, the
    client libraries cloud.google.com/managed-service-for-apache-kafka/docs/authentication-kafka
    points to): three base64url segments without padding, joined with ``.``::

        b64url({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"})
        . b64url({"exp": <expiry, epoch s>, "iat": <now>, "scope": "kafka", "sub": <principal email>})
        . b64url(<the Google OAuth2 access token itself>)

    The broker checks the access token in the last segment; the claims name the principal.  The
    claims are those of the Java handler (the Python server sends ``"iss": "Google"`` instead of
    ``scope``; the broker accepts both).
    """
    issued = int(time.time() if now is None else now)
    header = {"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}
    claims = {"exp": int(expires_at), "iat": issued, "scope": "kafka", "sub": principal}
    return ".".join(_b64url(part) for part in (json.dumps(header), json.dumps(claims), access_token))


class ManagedKafkaTokenProvider(TokenProvider):
    """OAUTHBEARER tokens for Google Cloud Managed Service for Apache Kafka, as the function's identity.

    Settings (``KAFKA_BACKUP_KAFKA__...``)::

        security_protocol: SASL_SSL
        sasl: {mechanism: OAUTHBEARER, token_provider: "gcp_identity:ManagedKafkaTokenProvider"}

    ``principal``: the service-account email the broker sees; by default the one the credentials
    report (on Cloud Run, the function's service account).  Needed only for credentials that carry
    no email (a user's gcloud login).  The identity needs ``roles/managedkafka.client``.
    """

    kind = "Google Managed Kafka token provider"

    def __init__(self, principal: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        if principal is not None and "@" not in principal:
            raise ConfigError(f"principal must be an email address, got {principal!r}",
                              field=f"{OPTIONS_FIELD}.principal")
        self.principal = principal

    def describe(self) -> str:
        return f"{self.kind} (principal {self.principal or 'from the credentials'})"

    def fetch_token(self) -> tuple[str, dt.datetime]:
        credentials = _fresh(_adc())
        principal = self.principal or getattr(credentials, "service_account_email", None)
        if not principal or principal == "default":
            raise ConfigError("the Google credentials carry no service-account email; set principal",
                              field=f"{OPTIONS_FIELD}.principal")
        token, expiry = credentials.token, credentials.expiry
        if not token or expiry is None:
            raise RuntimeError("google-auth returned no access token or no expiry")
        expiry = expiry.replace(tzinfo=dt.UTC)  # google-auth: naive UTC
        return managed_kafka_token(token, principal, expiry.timestamp()), expiry


class SecretManagerResolver:
    """Resolves ``secretref:gcp-secretmanager:projects/P/secrets/S/versions/V`` through the REST API.

    Why REST and not google-cloud-secret-manager: that client brings grpcio and protobuf (tens of
    MB, slower cold starts) for one GET that google-auth's ``AuthorizedSession`` makes as well.
    The identity needs ``roles/secretmanager.secretAccessor`` on the secret.  Errors name the secret
    and the HTTP status, never the value.
    """

    def __init__(self, base_url: str | None = None, *, timeout_seconds: float = 10.0) -> None:
        self.base_url = (base_url or os.environ.get(SECRET_MANAGER_URL_ENV) or SECRET_MANAGER_URL).rstrip("/")
        self.timeout_seconds = timeout_seconds

    def __call__(self, ref: str) -> str:
        if not _SECRET_NAME.fullmatch(ref):
            raise ConfigError(f"secret reference gcp-secretmanager:{ref!r}: expected "
                              "projects/PROJECT/secrets/NAME/versions/VERSION")
        session = AuthorizedSession(_adc())  # type: ignore[no-untyped-call]
        with _REFRESH_LOCK:  # the session refreshes the shared credentials when it needs to
            try:
                resp = session.get(f"{self.base_url}/v1/{ref}:access", timeout=self.timeout_seconds)
            except Exception as exc:
                raise ConfigError(f"secret {ref}: Secret Manager unreachable ({type(exc).__name__})") from exc
        if resp.status_code != 200:
            reason = resp.json().get("error", {}).get("status", "") if resp.headers.get(
                "Content-Type", "").startswith("application/json") else ""
            raise ConfigError(f"secret {ref}: Secret Manager answered HTTP {resp.status_code} {reason}".rstrip())
        try:
            return base64.b64decode(resp.json()["payload"]["data"]).decode()
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"secret {ref}: unexpected Secret Manager answer ({type(exc).__name__})") from exc


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
