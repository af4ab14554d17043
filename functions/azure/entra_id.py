"""The function app's managed identity (Entra ID), three ways: Blob Storage, Kafka and Key Vault.

Everything goes through azure-identity's :class:`~azure.identity.ManagedIdentityCredential`, which
speaks the protocol the Functions platform offers (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``: a
``GET ?resource=...&api-version=2019-08-01`` with the ``X-IDENTITY-HEADER`` header) and falls back
to the instance metadata service elsewhere.  ``AZURE_CLIENT_ID`` selects a user-assigned identity;
without it the system-assigned one is used.  No token is fetched by hand and none is ever logged.

* :func:`storage_credential_provider`: obstore's own ``AzureCredentialProvider`` for the Blob
  store (scope ``https://storage.azure.com/.default``): no account key or SAS anywhere.
* :class:`EntraIdTokenProvider`: ``kafka.sasl.token_provider: "entra_id:EntraIdTokenProvider"``
  with ``token_provider_options: {scope: "https://<namespace>.servicebus.windows.net/.default"}``
  for Azure Event Hubs' Kafka endpoint (or any broker that validates Entra ID tokens).
* :class:`KeyVaultSecretResolver`: ``secretref:azure-keyvault:https://<vault>.vault.azure.net/secrets/<name>[/<version>]``.

One credential per identity per process (:func:`managed_identity`): it caches each token until
shortly before it expires, so warm invocations do not ask the endpoint again.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from azure.identity import ManagedIdentityCredential
from kafka_backup import ConfigError
from kafka_backup.oauth import OPTIONS_FIELD, TokenProvider

if TYPE_CHECKING:
    from obstore.auth.azure import AzureCredentialProvider

__all__ = [
    "EntraIdTokenProvider",
    "KeyVaultSecretResolver",
    "managed_identity",
    "storage_credential_provider",
]

STORAGE_SCOPE = "https://storage.azure.com/.default"
#: Key Vault data-plane REST version (GA since 2023; "value" holds the secret).
KEY_VAULT_API_VERSION = "7.4"
#: An Entra ID scope for a resource: ``https://host[/path]/.default``.
_SCOPE = re.compile(r"https://[^/\s]+(/[^\s]*)?/\.default")
#: ``https://<vault>.<vault suffix>/secrets/<name>[/<version>]``; names are 1-127 of [0-9a-zA-Z-].
_SECRET_PATH = re.compile(r"/secrets/([0-9A-Za-z-]{1,127})(?:/([0-9A-Za-z]{1,64}))?/?")


def default_client_id() -> str | None:
    """``AZURE_CLIENT_ID``: the user-assigned identity to use (unset or empty: system-assigned)."""
    return os.environ.get("AZURE_CLIENT_ID", "").strip() or None


@functools.cache
def managed_identity(client_id: str | None = None) -> ManagedIdentityCredential:
    """The app's managed identity, built once per client id (its token cache lives as long)."""
    return ManagedIdentityCredential(client_id=client_id)


def storage_credential_provider(client_id: str | None = None) -> AzureCredentialProvider:
    """obstore's azure-identity provider for AzureStore, as the app's managed identity.

    Why not obstore's built-in managed-identity lookup (which reads ``IDENTITY_ENDPOINT`` too): one
    library, one token cache and one set of error messages for storage, Kafka and Key Vault, and
    azure-identity follows the platform's protocol changes.  obstore calls the provider again
    shortly before each token expires.
    """
    from obstore.auth.azure import AzureCredentialProvider

    return AzureCredentialProvider(credential=managed_identity(client_id or default_client_id()),
                                   scopes=(STORAGE_SCOPE,))


class EntraIdTokenProvider(TokenProvider):
    """OAUTHBEARER tokens from the app's managed identity, e.g. for Azure Event Hubs' Kafka endpoint.

    Settings (``KAFKA_BACKUP_KAFKA__...``)::

        bootstrap_servers: <namespace>.servicebus.windows.net:9093
        security_protocol: SASL_SSL
        sasl:
          mechanism: OAUTHBEARER
          token_provider: "entra_id:EntraIdTokenProvider"
          token_provider_options: {scope: "https://<namespace>.servicebus.windows.net/.default"}

    ``scope``: the resource's Entra ID scope (for Event Hubs the namespace URL + ``/.default``).
    ``client_id``: a user-assigned identity (default ``AZURE_CLIENT_ID``, else system-assigned).
    The identity needs "Azure Event Hubs Data Receiver" on the namespace (or the event hubs).
    """

    kind = "Entra ID token provider"

    def __init__(self, scope: str | None = None, client_id: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        if not scope or not _SCOPE.fullmatch(scope):
            raise ConfigError(f"scope must be an Entra ID scope like https://<namespace>.servicebus.windows.net/"
                              f".default, got {scope!r}", field=f"{OPTIONS_FIELD}.scope")
        self.scope = scope
        self.client_id = client_id or default_client_id()

    def describe(self) -> str:
        identity = f"user-assigned identity {self.client_id}" if self.client_id else "system-assigned identity"
        return f"{self.kind} (scope {self.scope}, {identity})"

    def fetch_token(self) -> tuple[str, float]:
        token = managed_identity(self.client_id).get_token(self.scope)
        return token.token, float(token.expires_on)


class KeyVaultSecretResolver:
    """Resolves ``secretref:azure-keyvault:<secret URI>`` with the app's managed identity.

    The URI is a Key Vault secret identifier, ``https://<vault>.vault.azure.net/secrets/<name>``
    with an optional ``/<version>`` (without: the current version).  The token's resource is the
    vault's DNS suffix (``https://vault.azure.net``; ``vault.azure.cn``, ``vault.usgovcloudapi.net``
    and ``managedhsm.azure.net`` likewise), so a token is only ever sent to a Key Vault host.  The
    identity needs "Key Vault Secrets User" on the secret or the vault.

    Why not azure-keyvault-secrets: one GET does not justify another SDK in the package.  Why not only
    the platform's ``@Microsoft.KeyVault(SecretUri=...)`` app settings (which also work, and need no
    code): those are resolved when the app starts and refreshed about daily, while this reads the
    secret at run time (cached for ``cache_seconds``), so a rotated password is picked up quickly.
    Errors name the secret URI and the HTTP status, never the value.
    """

    def __init__(self, *, client_id: str | None = None, timeout_seconds: float = 10.0,
                 cache_seconds: float = 300.0) -> None:
        self.client_id = client_id
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, ref: str) -> str:
        url, resource = _secret_url(ref)
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and time.monotonic() < hit[0]:
                return hit[1]
        value = self._fetch(ref, url, resource)
        with self._lock:
            self._cache[url] = (time.monotonic() + self.cache_seconds, value)
        return value

    def _fetch(self, ref: str, url: str, resource: str) -> str:
        where = f"secret azure-keyvault:{ref}"
        try:
            token = managed_identity(self.client_id or default_client_id()).get_token(f"{resource}/.default")
        except Exception as exc:  # azure-identity's messages name the endpoint, never a token
            raise ConfigError(f"{where}: no token for the managed identity ({type(exc).__name__}: {exc})") from exc
        try:
            resp = requests.get(url, params={"api-version": KEY_VAULT_API_VERSION},
                                headers={"Authorization": f"Bearer {token.token}"}, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise ConfigError(f"{where}: Key Vault unreachable ({type(exc).__name__})") from exc
        if resp.status_code != 200:
            raise ConfigError(f"{where}: Key Vault answered HTTP {resp.status_code} {_error_code(resp)}".rstrip())
        try:
            value = resp.json()["value"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: unexpected Key Vault answer ({type(exc).__name__})") from exc
        if not isinstance(value, str):
            raise ConfigError(f"{where}: unexpected Key Vault answer (value is {type(value).__name__})")
        return value


def _secret_url(ref: str) -> tuple[str, str]:
    """The secret's REST URL (without query) and the token resource for its vault."""
    parts = urlsplit(ref.strip())
    host = (parts.hostname or "").lower()
    vault, _, suffix = host.partition(".")
    path = _SECRET_PATH.fullmatch(parts.path or "")
    if (parts.scheme != "https" or not vault or not suffix.startswith(("vault.", "managedhsm.")) or path is None
            or parts.query or parts.fragment or parts.username or parts.password):
        raise ConfigError(f"secret reference azure-keyvault:{ref!r}: expected a Key Vault secret URI "
                          "https://<vault>.vault.azure.net/secrets/<name>[/<version>]")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    name, version = path.group(1), path.group(2)
    return f"https://{netloc}/secrets/{name}" + (f"/{version}" if version else ""), f"https://{suffix}"


def _error_code(resp: requests.Response) -> str:
    """Key Vault's error code (``Forbidden``, ``SecretNotFound`` ...): says why without any secret."""
    try:
        code = resp.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""
    return str(code) if isinstance(code, str) and len(code) < 100 else ""
