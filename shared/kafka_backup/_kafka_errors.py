"""The one place where kafka-python's exceptions become ours.

Why one place: cluster administration, the raw fetch path and restore's producer all talk to
kafka-python, and an operator must get the same answer (message and exit code) for the same
problem whichever of them met it first: a wrong password or an untrusted certificate is a
configuration problem (:class:`KafkaAuthError`, exit 2), a broker that cannot be reached is an
outage (:class:`KafkaClientError`, exit 4), a protocol mismatch is :class:`IncompatibleKafkaError`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from .errors import ConfigError, IncompatibleKafkaError, KafkaAuthError, KafkaBackupError, KafkaClientError

__all__ = ["describe", "kafka_errors", "translate_kafka_error"]

_AUTH_NAMES = frozenset({
    "SaslAuthenticationFailedError", "UnsupportedSaslMechanismError", "IllegalSaslStateError",
    "DelegationTokenAuthDisabledError",
})


def describe(exc: BaseException) -> str:
    """``Class: message`` (or just the class when the message is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def translate_kafka_error(exc: BaseException, what: str, *, topic: str | None = None,
                          partition: int | None = None) -> KafkaBackupError:
    """Our exception for ``exc``; callers ``raise translate_kafka_error(...) from exc``."""
    import kafka.errors as kerr

    if isinstance(exc, KafkaBackupError):
        return exc
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return KafkaAuthError(f"{what}: TLS certificate verification failed ({cause.verify_message or cause}); "
                                  "check kafka.tls.ca_file and that the broker's certificate names the host "
                                  "you connect to", topic=topic, partition=partition)
        if isinstance(cause, kerr.AuthorizationError) or type(cause).__name__ in _AUTH_NAMES:
            kind = "authorization" if isinstance(cause, kerr.AuthorizationError) else "authentication"
            return KafkaAuthError(f"{what}: {kind} failed ({describe(cause)}); check kafka.sasl and the "
                                  "cluster's ACLs", topic=topic, partition=partition)
    if isinstance(exc, kerr.IncompatibleBrokerVersion | kerr.UnsupportedVersionError):
        return IncompatibleKafkaError(f"{what}: the broker does not support the protocol versions kafka-backup "
                                      f"needs: {describe(exc)}", topic=topic, partition=partition)
    if isinstance(exc, kerr.InvalidReceiveError):
        return KafkaClientError(f"{what}: {describe(exc)}; a response exceeded receive_message_max_bytes "
                                "(lower backup.fetch_max_bytes)", topic=topic, partition=partition)
    if isinstance(exc, kerr.KafkaError | OSError | TimeoutError):
        return KafkaClientError(f"{what}: {describe(exc)}", topic=topic, partition=partition)
    return KafkaClientError(f"{what}: unexpected {describe(exc)} inside kafka-python", topic=topic,
                            partition=partition)


@contextlib.contextmanager
def kafka_errors(what: str, topic: str | None = None, partition: int | None = None, *,
                 settings_errors: bool = False) -> Iterator[None]:
    """Translate anything kafka-python raises inside the block.

    ``settings_errors``: the block builds a client from our settings, so ``ValueError`` /
    ``TypeError`` / ``AssertionError`` (kafka-python's way of refusing a setting) are configuration errors.
    """
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaBackupError:
        raise
    except (ValueError, TypeError, AssertionError) as exc:
        if not settings_errors:
            raise
        raise ConfigError(f"{what}: Kafka client setting refused: {describe(exc)}", field="kafka") from exc
    except (KafkaError, OSError, TimeoutError) as exc:
        raise translate_kafka_error(exc, what, topic=topic, partition=partition) from exc
