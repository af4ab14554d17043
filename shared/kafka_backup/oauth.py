"""OAUTHBEARER token providers: the extension point for cloud identities.

The engine reaches a cluster that authenticates with OAuth bearer tokens through two settings::

    kafka:
      security_protocol: SASL_SSL
      sasl:
        mechanism: OAUTHBEARER
        token_provider: "kafka_backup.oauth:UnsecuredJwtTokenProvider"   # module:callable
        token_provider_options: {subject: backup, lifetime_seconds: "900"}   # keyword args, strings

The callable is imported and called with ``token_provider_options`` as keyword arguments each
time a Kafka client is built; it returns a kafka-python ``AbstractTokenProvider``.  kafka-python
calls ``token()`` on its IO thread for every new connection (and for KIP-368 re-authentication),
so ``token()`` must be cheap, thread-safe and must not hand out a token about to expire.  That is
what :class:`TokenProvider` adds; a subclass only says how to get one token::

    class EntraIdTokenProvider(TokenProvider):             # e.g. in a function package
        def __init__(self, scope: str, **options: str) -> None:
            super().__init__(**options)                      # refresh_margin_seconds, ...
            from azure.identity import DefaultAzureCredential
            self._credential, self._scope = DefaultAzureCredential(), scope

        def describe(self) -> str:
            return f"Entra ID token provider (scope {self._scope})"

        def fetch_token(self) -> tuple[str, float]:
            tok = self._credential.get_token(self._scope)   # blocking; has its own timeout
            return tok.token, tok.expires_on                # epoch seconds

(google-auth's ``credentials.expiry`` is a naive UTC ``datetime``: return it as it is.)

What can go wrong, and what the base class does about it:

* **Expiry**: the cached token is replaced ``refresh_margin_seconds`` before it expires (at most
  half its lifetime before), so a connection opened just before expiry still authenticates.
* **Failure**: any exception from :meth:`TokenProvider.fetch_token`, or a malformed result,
  becomes :class:`TokenProviderError` (a :class:`~kafka_backup.errors.KafkaClientError`) naming
  the provider and the cause, never the token.  Note that kafka-python catches it on its IO
  thread and retries the connection until ``kafka.connect_timeout_seconds``; the message then
  only shows in the ``kafka.net`` log.  Call ``token()`` once after building the provider to
  fail fast with this message.
* **Leaks**: tokens are bearer credentials.  They are never logged here, and every token handed
  out is masked in the records of kafka-python's wire-level DEBUG loggers, which print the SASL
  bytes (``auth=Bearer ...``) verbatim.
* **Blocking**: ``fetch_token`` runs on kafka-python's IO thread and blocks it; keep its network
  timeout well below ``kafka.request_timeout_seconds``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from kafka.net.sasl.oauth import AbstractTokenProvider

from .errors import ConfigError, KafkaBackupError, KafkaClientError

__all__ = [
    "DEFAULT_REFRESH_MARGIN_SECONDS",
    "TokenProvider",
    "TokenProviderError",
    "UnsecuredJwtTokenProvider",
]

log = logging.getLogger(__name__)

#: Replace a token this long before it expires (capped at half of the token's lifetime).
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0
#: Where the provider's options live in the settings, for error messages.
OPTIONS_FIELD = "kafka.sasl.token_provider_options"
#: kafka-python loggers that print raw request bytes (the SASL frame with the token) at DEBUG.
_WIRE_LOGGERS = ("kafka.protocol.parser", "kafka.net.connection", "kafka.net.transport")
#: How many recent tokens stay masked in those logs (a connection may still use an older one).
_MASKED_TOKENS = 8


class TokenProviderError(KafkaClientError):
    """The token provider could not supply a usable OAUTHBEARER token (the message has no secret)."""


class TokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # kafka-python ships no types
    """Caching, refreshing, failure-translating base for OAUTHBEARER token providers.

    Subclasses implement :meth:`fetch_token` (and usually :meth:`describe`); options arrive as
    strings from ``kafka.sasl.token_provider_options``, so parse them with :meth:`number_option`.

    ``refresh_margin_seconds``: fetch a new token this long before the cached one expires.
    ``extensions``: SASL extensions sent with every token (KIP-342), e.g. Confluent Cloud's
    ``logicalCluster`` and ``identityPoolId``.
    """

    #: Used in messages when :meth:`describe` is not overridden.
    kind: ClassVar[str] = "OAUTHBEARER token provider"

    def __init__(self, *, refresh_margin_seconds: float | str = DEFAULT_REFRESH_MARGIN_SECONDS,
                 extensions: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.refresh_margin_seconds = self.number_option("refresh_margin_seconds", refresh_margin_seconds,
                                                         minimum=0.0)
        self._extensions = dict(extensions or {})
        for key, value in self._extensions.items():
            if not key.isalnum() or not key.isascii() or key == "auth" or "\x01" in value:
                raise ConfigError(f"SASL extension {key!r} is not allowed (keys are ASCII letters/digits, "
                                  "not 'auth'; values have no \\x01)", field=OPTIONS_FIELD)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0

    # -- for subclasses --------------------------------------------------------------------------
    @abstractmethod
    def fetch_token(self) -> tuple[str, float | int | dt.datetime]:
        """Get a new token from the identity provider: ``(token, expires_at)``.

        ``expires_at`` is epoch seconds or a ``datetime`` (naive means UTC).  Raise anything on
        failure; the base class wraps it.  Called under a lock, at most once per refresh.
        """

    def describe(self) -> str:
        """Names the provider in messages; include identifying options, never secrets."""
        return f"{self.kind} {type(self).__name__}"

    @staticmethod
    def number_option(name: str, value: float | int | str, *, minimum: float | None = None) -> float:
        """A numeric option given as a number or a string (YAML options are strings)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}", field=f"{OPTIONS_FIELD}.{name}") from None
        if not math.isfinite(number) or (minimum is not None and number < minimum):
            raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}",
                              field=f"{OPTIONS_FIELD}.{name}")
        return number

    # -- what kafka-python calls -----------------------------------------------------------------
    def token(self) -> str:
        """A token valid for at least the refresh margin (fetched when the cached one is due)."""
        with self._lock:
            if self._token is None or time.time() >= self._refresh_at:
                self._refresh()
            assert self._token is not None
            return self._token

    def extensions(self) -> dict[str, str]:
        return dict(self._extensions)

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds when the cached token expires (None before the first fetch)."""
        return self._expires_at if self._token is not None else None

    # -- internals -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        now = time.time()
        try:
            token, expires = self.fetch_token()
        except KafkaBackupError:
            raise
        except Exception as exc:
            raise TokenProviderError(f"{self.describe()}: could not get a token: "
                                     f"{type(exc).__name__}: {_safe_text(exc, self._token)}") from exc
        if not isinstance(token, str) or not token or any(c.isspace() or c == "\x01" for c in token):
            raise TokenProviderError(f"{self.describe()}: fetch_token returned an empty or malformed token "
                                     f"({type(token).__name__}); expected a non-empty string without whitespace")
        expires_at = _epoch_seconds(expires)
        if expires_at is None:
            raise TokenProviderError(f"{self.describe()}: fetch_token returned an expiry of type "
                                     f"{type(expires).__name__}; expected epoch seconds or a datetime")
        lifetime = expires_at - now
        if lifetime <= 0:
            raise TokenProviderError(f"{self.describe()}: the new token expired {-lifetime:.0f}s ago "
                                     "(is the clock right?)")
        self._token, self._expires_at = token, expires_at
        self._refresh_at = expires_at - min(self.refresh_margin_seconds, lifetime / 2)
        _mask_in_wire_logs(token)
        log.debug("%s: new token, valid for %.0fs, refreshed after %.0fs", self.describe(), lifetime,
                  self._refresh_at - now)


class UnsecuredJwtTokenProvider(TokenProvider):
    """Unsigned JWTs (``alg: none``) for brokers using Kafka's unsecured validator: dev and tests only.

    Kafka's default OAUTHBEARER server callback (``OAuthBearerUnsecuredValidatorCallbackHandler``)
    accepts such a token when it carries ``sub`` (the principal) and a future ``exp``; any broker
    meant for real data must use a signature-checking validator instead, which rejects these.

    ``subject``: the principal name.  ``lifetime_seconds``: token lifetime.  ``scope``: optional
    space-separated scopes (for ``unsecuredValidatorRequiredScope``).
    """

    kind = "unsecured JWT token provider"

    def __init__(self, subject: str, lifetime_seconds: str | int | float = 3600, *, scope: str | None = None,
                 refresh_margin_seconds: float | str = DEFAULT_REFRESH_MARGIN_SECONDS,
                 extensions: Mapping[str, str] | None = None) -> None:
        super().__init__(refresh_margin_seconds=refresh_margin_seconds, extensions=extensions)
        if not subject or not subject.strip():
            raise ConfigError("subject must be a non-empty principal name", field=f"{OPTIONS_FIELD}.subject")
        self.subject = subject
        self.lifetime_seconds = self.number_option("lifetime_seconds", lifetime_seconds, minimum=1.0)
        self.scope = scope.split() if scope else []

    def describe(self) -> str:
        return f"{self.kind} (subject {self.subject!r})"

    def fetch_token(self) -> tuple[str, float]:
        now = int(time.time())
        expires = now + int(self.lifetime_seconds)
        claims: dict[str, object] = {"sub": self.subject, "iat": now, "exp": expires}
        if self.scope:
            claims["scope"] = self.scope
        return f"{_b64url({'alg': 'none'})}.{_b64url(claims)}.", float(expires)


# -- helpers -----------------------------------------------------------------------------------------
def _b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _epoch_seconds(value: object) -> float | None:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _safe_text(exc: BaseException, token: str | None, limit: int = 500) -> str:
    """The exception's message, shortened, with the previous token (if it leaked into it) masked."""
    text = str(exc) or "(no message)"
    if token:
        text = text.replace(token, "***")
    return text if len(text) <= limit else text[:limit] + "..."


class _TokenMask(logging.Filter):
    """Masks recently issued tokens in kafka-python's wire-level DEBUG records."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []  # newest last: the oldest is dropped first
        self._longest_first: list[str] = []  # a short secret inside a token must not split it
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        with self._lock:
            if token not in self.tokens:
                self.tokens = [*self.tokens, token][-_MASKED_TOKENS:]
                self._longest_first = sorted(self.tokens, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        tokens = self._longest_first
        if not tokens:
            return True
        message = record.getMessage()
        masked = message
        for token in tokens:
            masked = masked.replace(token, "***")
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_MASK = _TokenMask()


def mask_in_kafka_logs(secret: str) -> None:
    """Mask ``secret`` (a token, a SASL/PLAIN password) wherever kafka-python's wire-level DEBUG
    records would print it (``auth_bytes=b'\\x00user\\x00password'``, ``Bearer <token>``)."""
    _mask_in_wire_logs(secret)


def _mask_in_wire_logs(token: str) -> None:
    _MASK.add(token)
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if _MASK not in logger.filters:
            logger.addFilter(_MASK)
