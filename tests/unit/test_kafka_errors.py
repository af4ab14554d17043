"""One mapping of kafka-python's exceptions: the same problem gets the same error and exit code."""

from __future__ import annotations

import ssl

import kafka.errors as kerr
import pytest
from kafka_backup import ExitCode, exit_code_for
from kafka_backup._kafka_errors import kafka_errors, translate_kafka_error
from kafka_backup.errors import ConfigError, IncompatibleKafkaError, KafkaAuthError, KafkaClientError


def _cert_error() -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    err.verify_message = "unable to get local issuer certificate"
    return err


@pytest.mark.parametrize(("exc", "kind", "code", "words"), [
    (kerr.SaslAuthenticationFailedError("bad password"), KafkaAuthError, ExitCode.CONFIG, "authentication failed"),
    (kerr.TopicAuthorizationFailedError(), KafkaAuthError, ExitCode.CONFIG, "authorization failed"),
    (_cert_error(), KafkaAuthError, ExitCode.CONFIG, "TLS certificate verification failed"),
    (kerr.KafkaConnectionError("refused"), KafkaClientError, ExitCode.UNREACHABLE, "refused"),
    (kerr.KafkaTimeoutError("bootstrap"), KafkaClientError, ExitCode.UNREACHABLE, "bootstrap"),
    (ConnectionResetError("reset"), KafkaClientError, ExitCode.UNREACHABLE, "reset"),
    (kerr.UnsupportedVersionError(), IncompatibleKafkaError, ExitCode.FAILED, "protocol versions"),
    (kerr.InvalidReceiveError("too big"), KafkaClientError, ExitCode.UNREACHABLE, "fetch_max_bytes"),
])
def test_translation(exc: BaseException, kind: type, code: ExitCode, words: str) -> None:
    ours = translate_kafka_error(exc, "connect", topic="t", partition=3)
    assert type(ours) is kind
    assert exit_code_for(ours) == code
    assert words in str(ours) and str(ours).startswith("t[3]: connect")


def test_a_wrapped_cause_is_found() -> None:
    try:
        try:
            raise _cert_error()
        except ssl.SSLError as inner:
            raise kerr.KafkaConnectionError("handshake") from inner
    except kerr.KafkaError as outer:
        assert isinstance(translate_kafka_error(outer, "connect"), KafkaAuthError)


def test_context_manager_translates_and_keeps_the_cause() -> None:
    with pytest.raises(KafkaClientError) as err, kafka_errors("list offsets"):
        raise kerr.RequestTimedOutError()
    assert isinstance(err.value.__cause__, kerr.RequestTimedOutError)
    with pytest.raises(ConfigError, match="setting refused"), kafka_errors("create producer", settings_errors=True):
        raise ValueError("batch_size must be positive")
    with pytest.raises(ValueError), kafka_errors("no settings here"):
        raise ValueError("a bug stays a bug")
