"""run_scheduled_backup: payload parsing, the deadline rule, and failures before a run starts."""

from __future__ import annotations

import logging
import time

import pytest
from kafka_backup import ExitCode, run_scheduled_backup
from kafka_backup.errors import ConfigError
from kafka_backup.scheduled import deadline_from_budget, parse_payload

ENV = {"KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFKA_BACKUP_STORAGE__URL": "memory://sched"}


@pytest.mark.parametrize(("payload", "parsed"), [
    (None, {}), (b"", {}), ("{}", {}), (b'{"job": "a"}', {"job": "a"}), ({"backup": {"topics": "x"}},
                                                                         {"backup": {"topics": "x"}}),
])
def test_parse_payload(payload: object, parsed: dict[str, object]) -> None:
    assert parse_payload(payload) == parsed


@pytest.mark.parametrize("payload", [b"not json", "[1, 2]", 42])
def test_parse_payload_refuses(payload: object) -> None:
    with pytest.raises(ConfigError, match=r"^event: "):
        parse_payload(payload)


def test_deadline_margin_rule() -> None:
    now = time.monotonic()
    assert abs(deadline_from_budget(600, started=now, environ={}).monotonic - (now + 570)) < 1e-6  # 30 s margin
    assert abs(deadline_from_budget(9, started=now, environ={}).monotonic - (now + 6)) < 1e-6  # a third at most
    env = {"KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS": "60"}
    assert abs(deadline_from_budget(900, started=now, environ=env).monotonic - (now + 840)) < 1e-6
    with pytest.raises(ConfigError, match="KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS"):
        deadline_from_budget(900, environ={"KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS": "soon"})


@pytest.mark.parametrize(("payload", "env", "error"), [
    (b"{oops", ENV, "the payload is not JSON"),
    ({"backup": {"shard": {"index": 4, "count": 4}}}, ENV, "event: backup.shard"),
    (None, {**ENV, "KAFKA_BACKUP_TIMEOUT_SECONDS": "0"}, "KAFKA_BACKUP_TIMEOUT_SECONDS must be a positive"),
    (None, {"KAFKA_BACKUP_STORAGE__URL": "memory://"}, "no Kafka cluster"),
])
def test_a_run_that_cannot_start_is_a_result(payload: object, env: dict[str, str], error: str) -> None:
    result = run_scheduled_backup(payload, environ=env)
    assert not result.ok and result.exit_code == ExitCode.CONFIG and error in (result.error or "")
    assert result.log_level == logging.ERROR and result.metrics().as_dict()["RunFailed"] == 1
    assert result.summary(service="fn")["service"] == "fn"
    assert "not started" in result.summary_line()


def test_budget_from_the_environment_bounds_an_unreachable_cluster() -> None:
    t0 = time.monotonic()
    result = run_scheduled_backup({"backup": {"topics": ["t"]}},
                                  environ={**ENV, "KAFKA_BACKUP_TIMEOUT_SECONDS": "6"})
    assert time.monotonic() - t0 < 6
    assert result.exit_code == ExitCode.UNREACHABLE and result.time_left_seconds is not None
