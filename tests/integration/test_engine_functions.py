"""What a scheduled function relies on, against the real broker: a deadline inside any phase, whole-run
failures as results, topic identity, warnings for writes that may fail, and structured log fields."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka_backup import Deadline, ExitCode, Settings, _failpoints, run_backup
from kafka_backup.catalog import PartitionChain, read_topic_id
from kafka_backup.errors import ConfigError, StorageError
from kafka_backup.report import summarize, verify
from kafka_backup.storage import Store, open_store

from tests.integration.conftest import backed_up_rows, chain_ranges, consume_all, settings, wait_for

pytestmark = pytest.mark.integration

DEADLINE_S = 4.0
SLACK_S = 1.0


def _fill(producer: KafkaProducer, topic: str, partitions: int, n: int) -> None:
    for i in range(n):
        producer.send(topic, value=b"%06d" % i + b"x" * 1000, partition=i % partitions)
    producer.flush()


@pytest.fixture
def filled(make_topic: Any, producer: KafkaProducer) -> str:
    topic = make_topic(2)
    _fill(producer, topic, 2, 600)
    return topic


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "nth"), [
    ("connect", 1), ("select", 1), ("metadata", 1), ("snapshot", 1), ("plan", 1), ("sweep", 1),
    ("fetch", 3), ("commit", 2),
])
def test_deadline_inside_each_phase_returns_in_time_with_work_committed(
        phase: str, nth: int, filled: str, bootstrap_servers: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The phase takes almost the whole deadline; the run must not start the next phase, must return
    by the deadline (plus slack for the in-flight call) and keep every committed segment intact."""
    url = f"file://{tmp_path / 'bk'}"
    _failpoints.reset()
    monkeypatch.setenv("KAFKA_BACKUP_DELAYPOINT", f"{phase}:{DEADLINE_S - 0.3}@{nth}")
    cfg = settings(bootstrap_servers, url, [filled], segment_max_bytes=16 << 10, partition_fetch_max_bytes=32 << 10)
    t0 = time.monotonic()
    result = run_backup(cfg, deadline=Deadline.after(DEADLINE_S))
    elapsed = time.monotonic() - t0
    monkeypatch.delenv("KAFKA_BACKUP_DELAYPOINT")
    assert elapsed < DEADLINE_S + SLACK_S, f"{phase}: returned after {elapsed:.2f}s"
    assert result.ok and result.stop_reason == "deadline", (phase, result.stop_reason, result.errors)
    assert result.lag > 0 or not result.partitions  # the run really was cut short
    if phase in ("fetch", "commit"):
        assert result.records > 0  # work done before the slow call is committed
    if result.records:
        assert verify(open_store(url)).ok
    # the next run (no deadline) completes exactly
    done = run_backup(cfg)
    assert done.ok and done.lag == 0
    store = open_store(url)
    for p in (0, 1):
        ranges = chain_ranges(store, filled, p)
        assert [r[1] for r in ranges[1:]] == [r[2] for r in ranges[:-1]]  # contiguous
        assert backed_up_rows(store, filled, p) == consume_all(bootstrap_servers, filled, p)
        assert len(backed_up_rows(store, filled, p)) == 300


def test_unreachable_cluster_is_bounded_by_the_deadline(tmp_path: Path) -> None:
    cfg = Settings.model_validate({"kafka": {"bootstrap_servers": "127.0.0.1:1", "connect_timeout_seconds": 60},
                                   "storage": {"url": f"file://{tmp_path}"}, "backup": {"topics": ["x"]}})
    t0 = time.monotonic()
    result = run_backup(cfg, deadline=Deadline.after(3), raise_on_error=False)
    assert time.monotonic() - t0 < 3 + SLACK_S
    assert not result.ok and result.exit_code == ExitCode.UNREACHABLE
    assert result.error_type == "KafkaClientError" and result.metrics().as_dict()["RunFailed"] == 1
    assert result.summary()["ok"] is False and "127.0.0.1:1" in (result.error or "")


def test_empty_selection_is_a_config_error(bootstrap_servers: str, tmp_path: Path) -> None:
    cfg = settings(bootstrap_servers, f"file://{tmp_path}", [])
    with pytest.raises(ConfigError, match="nothing to back up"):
        run_backup(cfg)
    nothing = settings(bootstrap_servers, f"file://{tmp_path}", [], topic_patterns=["no-such-topic-.*"])
    result = run_backup(nothing, raise_on_error=False)
    assert result.exit_code == ExitCode.CONFIG and "match no topic" in (result.error or "")


def test_recreated_topic_is_recognised_by_its_id(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                 admin: KafkaAdminClient, producer: KafkaProducer) -> None:
    """The new topic's high watermark passes the old chain's end: only the id can tell them apart."""
    topic = make_topic(1)
    _fill(producer, topic, 1, 20)
    url = f"file://{tmp_path / 'bk'}"
    first = run_backup(settings(bootstrap_servers, url, [topic]))
    assert first.ok and first.records == 20
    store = open_store(url)
    old_id = read_topic_id(store, topic)
    assert old_id and len(old_id) == 36
    admin.delete_topics([topic])
    wait_for(lambda: topic not in admin.list_topics(), 30, "topic deletion")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "-1"}}},
                        wait_for_metadata=True)
    _fill(producer, topic, 1, 50)  # 50 > 20: a watermark comparison alone would continue the old chain
    before = sorted(i.key for i in store.list(f"topics/{topic}"))
    result = run_backup(settings(bootstrap_servers, url, [topic]))
    assert not result.ok and result.exit_code == ExitCode.FAILED
    error = result.partitions[0].error or ""
    assert "deleted and recreated" in error and old_id in error
    assert sorted(i.key for i in store.list(f"topics/{topic}")) == before  # nothing written for it
    assert chain_ranges(store, topic, 0) == [("segment", 0, 20)]
    assert [s.topic_id for s in summarize(store)] == [old_id]
    assert verify(store).partitions[0].topic_id == old_id


def test_verify_of_a_location_without_a_backup_fails(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "kafka_backup.cli", "verify", "--storage",
                          f"file://{tmp_path / 'typo'}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == ExitCode.FAILED, out.stdout + out.stderr
    assert "no backup found at file://" in out.stdout


class _FlakyStore(Store):
    """A real store whose hint and summary writes fail, as a throttled bucket's might."""

    def put(self, key: str, data: Any) -> Any:
        if key.startswith("runs/") or key.endswith("/head.json"):
            raise StorageError(f"put {key}: 503 SlowDown", key=key)
        return super().put(key, data)


def test_writes_allowed_to_fail_are_warnings_and_fields_are_structured(
        bootstrap_servers: str, make_topic: Any, producer: KafkaProducer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    topic = make_topic(1)
    _fill(producer, topic, 1, 10)
    url = f"file://{tmp_path / 'bk'}"
    inner = open_store(url)
    store = _FlakyStore(inner._inner, prefix=inner._prefix, display=inner.display)
    with caplog.at_level(logging.INFO, logger="kafka_backup"):
        result = run_backup(settings(bootstrap_servers, url, [topic]), store=store)
    assert result.ok and result.records == 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("run summary not written" in r.getMessage() for r in warnings)
    head = [r for r in warnings if "head hint not written" in r.getMessage()]
    assert head and head[0].topic == topic and head[0].partition == 0  # type: ignore[attr-defined]
    assert all(getattr(r, "run_id", None) == result.run_id for r in warnings)
    assert PartitionChain(inner, topic, 0).read_head() is None  # really not written; the chain still is
    assert chain_ranges(inner, topic, 0) == [("segment", 0, 10)]
