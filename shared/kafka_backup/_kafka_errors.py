"""The one place where kafka-python's exceptions become ours.

Why one place: cluster administration, the raw fetch path and restore's producer all talk to
kafka-python, and an operator must get the same answer (message and exit code) for the same
problem whichever of them met it first: a wrong password or an untrusted certificate is a
configuration problem (:class:`KafkaAuthError`, exit 2), a broker that cannot be reached is an
outage (:class:`KafkaClientError`, exit 4), a protocol mismatch is :class:`IncompatibleKafkaError`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator

from .errors import ConfigError, IncompatibleKafkaError, KafkaAuthError, KafkaBackupError, KafkaClientError

__all__ = ["bootstrap_causes", "describe", "kafka_errors", "translate_bootstrap_failure", "translate_kafka_error"]

_BOOTSTRAP_LOGGER = "kafka.net.manager"

_AUTH_NAMES = frozenset({
    "SaslAuthenticationFailedError", "UnsupportedSaslMechanismError", "IllegalSaslStateError",
    "DelegationTokenAuthDisabledError",
})


def describe(exc: BaseException) -> str:
    """``Class: message`` (or just the class when the message is empty)."""
    text, name = str(exc), type(exc).__name__
    if not text or text == name:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


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


class _BootstrapCauses(logging.Filter):
    """Collects why each bootstrap attempt failed.

    Why: kafka-python 3.0.12 retries a failed bootstrap connection (refused, TLS handshake,
    SASL authentication) until its timeout and then raises a bare ``KafkaTimeoutError`` with no
    cause; the real reasons only appear in ``kafka.net.manager``'s warnings.  Without them a wrong
    password would look like an outage.
    """

    def __init__(self) -> None:
        super().__init__()
        self.causes: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if str(record.msg).startswith("Bootstrap connection to") and isinstance(args, tuple) and len(args) > 1 \
                and isinstance(args[1], BaseException):
            self.causes.append(args[1])
        return True


@contextlib.contextmanager
def bootstrap_causes() -> Iterator[list[BaseException]]:
    """While the block runs, collect the exceptions of failed bootstrap attempts (see above)."""
    logger = logging.getLogger(_BOOTSTRAP_LOGGER)
    capture = _BootstrapCauses()
    previous = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)  # the records must be created for the filter to see them
    logger.addFilter(capture)
    try:
        yield capture.causes
    finally:
        logger.removeFilter(capture)
        logger.setLevel(previous)


def translate_bootstrap_failure(exc: BaseException, causes: list[BaseException], what: str) -> KafkaBackupError:
    """A bootstrap timeout, explained by the attempts' own errors: an authentication or
    certificate failure among them wins (it will not go away by retrying); else the last one."""
    translated = [translate_kafka_error(c, what) for c in causes]
    for error in translated:
        if isinstance(error, KafkaAuthError):
            return error
    if causes:
        return KafkaClientError(f"{what}: {describe(exc)}; {len(causes)} attempt(s), the last failed with "
                                f"{describe(causes[-1])}")
    return translate_kafka_error(exc, what)


@contextlib.contextmanager
def kafka_errors(what: str, topic: str | None = None, partition: int | None = None, *,
                 settings_errors: bool = False, connecting: bool = False) -> Iterator[None]:
    """Translate anything kafka-python raises inside the block.

    ``settings_errors``: the block builds a client from our settings, so ``ValueError`` /
    ``TypeError`` / ``AssertionError`` (kafka-python's way of refusing a setting) are configuration errors.
    ``connecting``: the block bootstraps a client; a timeout is explained by the attempts' errors.
    """
    from kafka.errors import KafkaError, KafkaTimeoutError

    causes: list[BaseException] = []
    try:
        if connecting:
            with bootstrap_causes() as causes:
                yield
        else:
            yield
    except KafkaBackupError:
        raise
    except KafkaTimeoutError as exc:
        if connecting:
            raise translate_bootstrap_failure(exc, causes, what) from exc
        raise translate_kafka_error(exc, what, topic=topic, partition=partition) from exc
    except (ValueError, TypeError, AssertionError) as exc:
        if not settings_errors:
            raise
        raise ConfigError(f"{what}: Kafka client setting refused: {describe(exc)}", field="kafka") from exc
    except (KafkaError, OSError, TimeoutError) as exc:
        raise translate_kafka_error(exc, what, topic=topic, partition=partition) from exc
