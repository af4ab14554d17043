"""The write policy: a partition is written only when enough bytes wait, its oldest unbacked record
reaches the RPO, or it nears the topic's retention; otherwise it waits, and says how stale it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka_backup import run_backup
from kafka_backup.cli import main as cli_main
from kafka_backup.config import Settings
from kafka_backup.errors import ConfigError

from tests.integration.conftest import chain_ranges, settings

pytestmark = pytest.mark.integration

MIN_BYTES = 16 << 10
HOUR_MS = 3_600_000


def _send(producer: KafkaProducer, topic: str, partition: int, n: int, size: int, ts: int | None = None) -> None:
    for _ in range(n):
        producer.send(topic, value=b"x" * size, partition=partition, timestamp_ms=ts)
    producer.flush()


def _policy(bootstrap: str, url: str, topic: str, **extra: Any) -> Settings:
    return settings(bootstrap, url, [topic], segment_min_bytes=MIN_BYTES, max_lag_seconds=3600, **extra)


def test_bytes_and_age_decide_and_deferred_partitions_report_their_recovery_point(
        bootstrap_servers: str, make_topic: Any, producer: KafkaProducer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    topic = make_topic(3)
    now = int(time.time() * 1000)
    _send(producer, topic, 0, 40, 1000)  # ~40 KiB fresh: above the threshold
    _send(producer, topic, 1, 10, 1000)  # ~10 KiB fresh: just under it -> waits
    _send(producer, topic, 2, 3, 100, ts=now - 2 * HOUR_MS)  # tiny but 2 h old: past the 1 h RPO
    url = f"file://{tmp_path / 'bk'}"
    result = run_backup(_policy(bootstrap_servers, url, topic))
    by_p = {p.partition: p for p in result.partitions}
    assert result.ok
    assert (by_p[0].status, by_p[0].records) == ("complete", 40)
    assert (by_p[2].status, by_p[2].records) == ("complete", 3)
    assert (by_p[1].status, by_p[1].records, by_p[1].lag) == ("deferred", 0, 10)
    assert chain_ranges(result_store(url), topic, 1) == []  # nothing written for it
    oldest = by_p[1].oldest_unbacked_ms
    assert oldest is not None and now - 1000 <= oldest <= int(time.time() * 1000)
    metrics = result.metrics().as_dict()
    assert metrics["PartitionsDeferred"] == 1 and 0 <= metrics["RpoSeconds"] < 120
    assert cli_main(["ls", "--storage", url]) == 0
    assert "RPO), lag 10 offsets, 1 partitions deferred" in capsys.readouterr().out

    _send(producer, topic, 1, 7, 1000)  # now ~17 KiB wait: written
    again = run_backup(_policy(bootstrap_servers, url, topic))
    p1 = next(p for p in again.partitions if p.partition == 1)
    assert (p1.status, p1.records) == ("complete", 17) and again.rpo_seconds == 0


def test_retention_is_the_deadline_that_matters(bootstrap_servers: str, make_topic: Any, producer: KafkaProducer,
                                                tmp_path: Path) -> None:
    """90 minutes old on a 2-hour retention: the RPO (3 h here) has not passed, but waiting for it
    could lose the records, so they are written now."""
    topic = make_topic(1, configs={"retention.ms": str(2 * HOUR_MS)})
    _send(producer, topic, 0, 3, 100, ts=int(time.time() * 1000) - 90 * 60_000)
    url = f"file://{tmp_path / 'bk'}"
    cfg = settings(bootstrap_servers, url, [topic], segment_min_bytes=MIN_BYTES, max_lag_seconds=3 * 3600)
    result = run_backup(cfg)
    assert (result.partitions[0].status, result.records) == ("complete", 3)


def test_flush_writes_whatever_waits(bootstrap_servers: str, make_topic: Any, producer: KafkaProducer,
                                     tmp_path: Path) -> None:
    topic = make_topic(1)
    _send(producer, topic, 0, 2, 100)
    url = f"file://{tmp_path / 'bk'}"
    assert run_backup(_policy(bootstrap_servers, url, topic)).partitions[0].status == "deferred"
    flushed = run_backup(_policy(bootstrap_servers, url, topic).model_copy(
        update={"backup": _policy(bootstrap_servers, url, topic).backup.model_copy(update={"segment_min_bytes": 0})}))
    assert (flushed.partitions[0].status, flushed.records) == ("complete", 2)


def test_a_threshold_without_an_rpo_is_refused() -> None:
    with pytest.raises(ConfigError, match="segment_min_bytes needs max_lag_seconds"):
        Settings.from_mapping({"kafka": {"bootstrap_servers": "a:1"}, "storage": {"url": "memory://"},
                               "backup": {"segment_min_bytes": 1024}})


def result_store(url: str) -> Any:
    from kafka_backup.storage import open_store

    return open_store(url)
