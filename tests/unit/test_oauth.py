"""The OAUTHBEARER token-provider base: caching, refresh before expiry, failures without secrets,
option parsing, the unsecured JWT format Kafka's validator expects, and masking in kafka-python's
wire logs.  (The providers against a real broker: tests/integration/test_secured_kafka.py.)"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from typing import Any

import pytest
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka_backup import oauth
from kafka_backup.errors import ConfigError, KafkaClientError
from kafka_backup.oauth import TokenProvider, TokenProviderError, UnsecuredJwtTokenProvider


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(oauth.time, "time", c)
    return c


class Counting(TokenProvider):
    """Issues tok-1, tok-2, ... each valid for ``lifetime`` seconds from the clock's now."""

    def __init__(self, clock: Clock, lifetime: float, **options: Any) -> None:
        super().__init__(**options)
        self.clock, self.lifetime, self.calls = clock, lifetime, 0
        self.fail: BaseException | None = None

    def fetch_token(self) -> tuple[str, float]:
        if self.fail is not None:
            raise self.fail
        self.calls += 1
        return f"tok-{self.calls}", self.clock.now + self.lifetime


def test_is_a_kafka_python_token_provider() -> None:
    assert isinstance(UnsecuredJwtTokenProvider("x"), AbstractTokenProvider)
    with pytest.raises(TypeError):
        TokenProvider()  # type: ignore[abstract]


def test_caches_and_refreshes_the_margin_before_expiry(clock: Clock) -> None:
    p = Counting(clock, 3600, refresh_margin_seconds="300")
    assert p.token() == p.token() == "tok-1" and p.calls == 1
    clock.now += 3600 - 301
    assert p.token() == "tok-1"
    clock.now += 2  # 299 s left: inside the margin
    assert p.token() == "tok-2" and p.expires_at == clock.now + 3600


def test_margin_is_capped_at_half_a_short_lifetime(clock: Clock) -> None:
    p = Counting(clock, 60)  # default margin 300 s > lifetime: refresh after 30 s, not on every call
    assert p.token() == p.token() == "tok-1"
    clock.now += 29
    assert p.token() == "tok-1"
    clock.now += 2
    assert p.token() == "tok-2"


def test_fetch_failure_becomes_a_client_error_without_the_token(clock: Clock) -> None:
    p = Counting(clock, 10)
    assert p.token() == "tok-1"
    clock.now += 100
    p.fail = RuntimeError("endpoint refused; last token was tok-1")
    with pytest.raises(TokenProviderError) as info:
        p.token()
    assert isinstance(info.value, KafkaClientError)
    message = str(info.value)
    assert "Counting" in message and "could not get a token" in message and "RuntimeError" in message
    assert "tok-1" not in message and "***" in message


@pytest.mark.parametrize(("token", "expires", "why"), [
    ("", 1e10, "empty or malformed"),
    ("a b", 1e10, "empty or malformed"),
    ("ok", "tomorrow", "expected epoch seconds"),
    ("ok", 1_000.0, "expired"),
])
def test_malformed_results_are_rejected(clock: Clock, token: str, expires: Any, why: str) -> None:
    class Bad(TokenProvider):
        def fetch_token(self) -> Any:
            return token, expires

    with pytest.raises(TokenProviderError, match=why):
        Bad().token()


def test_datetime_expiry_naive_means_utc(clock: Clock) -> None:
    class Google(TokenProvider):  # google-auth: credentials.expiry is a naive UTC datetime
        def fetch_token(self) -> tuple[str, dt.datetime]:
            return "g", dt.datetime.fromtimestamp(clock.now + 3600, dt.UTC).replace(tzinfo=None)

    p = Google()
    assert p.token() == "g" and p.expires_at == pytest.approx(clock.now + 3600)


def test_options_are_parsed_and_named_in_errors() -> None:
    assert UnsecuredJwtTokenProvider("s", "90", refresh_margin_seconds="5").lifetime_seconds == 90
    with pytest.raises(ConfigError, match=r"token_provider_options\.lifetime_seconds"):
        UnsecuredJwtTokenProvider("s", "an hour")
    with pytest.raises(ConfigError, match=r"token_provider_options\.refresh_margin_seconds"):
        UnsecuredJwtTokenProvider("s", refresh_margin_seconds="-1")
    with pytest.raises(ConfigError, match=r"token_provider_options\.subject"):
        UnsecuredJwtTokenProvider(" ")
    with pytest.raises(ConfigError, match="extension"):
        UnsecuredJwtTokenProvider("s", extensions={"auth": "x"})


def test_unsecured_jwt_has_the_shape_kafka_validates(clock: Clock) -> None:
    token = UnsecuredJwtTokenProvider("backup", 600, scope="a b").token()
    header, payload, signature = token.split(".")
    assert signature == ""

    def decode(part: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    assert decode(header) == {"alg": "none"}
    assert decode(payload) == {"sub": "backup", "iat": int(clock.now), "exp": int(clock.now) + 600,
                               "scope": ["a", "b"]}


def test_tokens_are_masked_in_kafka_wire_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = UnsecuredJwtTokenProvider("masked").token()
    with caplog.at_level(logging.DEBUG, logger="kafka.protocol.parser"):
        logging.getLogger("kafka.protocol.parser").debug("Send: %r", b"n,,\x01auth=Bearer " + token.encode())
    assert token not in caplog.text and "auth=Bearer ***" in caplog.text


def test_a_short_secret_inside_a_token_does_not_split_its_mask() -> None:
    """The token is masked whole even when a shorter masked secret occurs inside it (and was added
    after it)."""
    import logging

    from kafka_backup.oauth import _TokenMask

    token = "header.payload-with-pass123-inside.signature"
    mask = _TokenMask()
    mask.add(token)
    mask.add("pass123")
    record = logging.LogRecord("kafka", logging.DEBUG, __file__, 1, "sent %s", (token,), None)
    mask.filter(record)
    assert record.getMessage() == "sent ***"
