"""RunResult's platform-facing surface (metrics, summary, exit codes) and Deadline arithmetic."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka_backup import Deadline, ExitCode, RunFailedError, exit_code_for
from kafka_backup.backup import Gap, PartitionResult, RunResult
from kafka_backup.deadline import as_deadline
from kafka_backup.errors import (
    ConfigError,
    IncompatibleKafkaError,
    KafkaAuthError,
    KafkaClientError,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
)


def _result(*parts: PartitionResult, **kw: object) -> RunResult:
    base: dict[str, object] = dict(run_id="r1", started_at="s", finished_at="f", duration_seconds=2.5,
                                   stop_reason="complete", partitions=parts, storage="memory://x", shard="1/4",
                                   time_left_seconds=12.0)
    base.update(kw)
    return RunResult(**base)  # type: ignore[arg-type]


def _part(status: str = "complete", **kw: object) -> PartitionResult:
    base: dict[str, object] = dict(topic="t", partition=0, status=status, start_offset=0, end_offset=10,
                                   target_offset=10, records=10, raw_bytes=1000, stored_bytes=300, segments=1)
    base.update(kw)
    return PartitionResult(**base)  # type: ignore[arg-type]


def test_metrics_have_names_units_and_dimensions() -> None:
    r = _result(_part(), _part("partial", partition=1, end_offset=5, target_offset=9, records=5),
                _part(partition=2, gaps=(Gap("t", 2, 0, 3, "now"),)))
    m = r.metrics(service="fn")
    assert m.dimensions == {"shard": "1/4", "service": "fn"}
    units = {f.name: f.unit for f in m.figures}
    values = m.as_dict()
    assert values["Records"] == 25 and units["Records"] == "Count"
    assert values["BatchBytesRead"] == 3000 and units["BatchBytesRead"] == "Bytes"
    assert values["BytesStored"] == 900 and values["Segments"] == 3
    assert (values["PartitionsComplete"], values["PartitionsPartial"], values["PartitionsError"]) == (2, 1, 0)
    assert values["LagRecords"] == 4 and values["GapOffsets"] == 3
    assert values["RunSeconds"] == 2.5 and units["RunSeconds"] == "Seconds"
    assert values["TimeLeftSeconds"] == 12.0 and values["RunFailed"] == 0


def test_summary_line_and_structured_summary() -> None:
    r = _result(_part(), job="orders-1")
    assert r.summary_line().startswith("total: 10 records, 1000 B read, 300 B stored, 1 segments")
    doc = r.summary()
    assert doc["event"] == "backup_run" and doc["ok"] is True and doc["job"] == "orders-1"
    assert doc["records"] == 10 and doc["gap_offsets"] == 0 and doc["exit_code"] == 0


@pytest.mark.parametrize(("result", "code"), [
    (_result(_part()), ExitCode.OK),
    (_result(_part(gaps=(Gap("t", 0, 0, 1, "now"),))), ExitCode.GAPS),
    (_result(_part("error", error="boom"), _part(gaps=(Gap("t", 0, 0, 1, "now"),))), ExitCode.FAILED),
    (_result(stop_reason="error", error="x", error_type="KafkaClientError", error_exit_code=4), ExitCode.UNREACHABLE),
])
def test_exit_code(result: RunResult, code: ExitCode) -> None:
    assert result.exit_code == code


def test_raise_for_status() -> None:
    _result(_part(gaps=(Gap("t", 0, 0, 1, "now"),))).raise_for_status()  # gaps alone do not raise
    with pytest.raises(RunFailedError, match=r"t\[0\] failed: boom \(and 1 more") as err:
        _result(_part("error", error="boom"), _part("error", partition=1, error="bam")).raise_for_status()
    assert err.value.exit_code == ExitCode.FAILED
    cause = KafkaClientError("down")
    failed = _result(stop_reason="error", error="down", error_type="KafkaClientError", error_exit_code=4,
                     exception=cause)
    assert failed.metrics().as_dict()["RunFailed"] == 1
    with pytest.raises(RunFailedError) as err2:
        failed.raise_for_status()
    assert err2.value.__cause__ is cause and err2.value.exit_code == 4
    assert "exception" not in failed.to_dict()


@pytest.mark.parametrize(("exc", "code"), [
    (ConfigError("x"), ExitCode.CONFIG), (KafkaAuthError("x"), ExitCode.CONFIG),
    (KafkaClientError("x"), ExitCode.UNREACHABLE), (StorageError("x"), ExitCode.UNREACHABLE),
    (ObjectNotFound("x"), ExitCode.UNREACHABLE), (IncompatibleKafkaError("x"), ExitCode.FAILED),
    (StorageAuthError("403"), ExitCode.CONFIG),
    (RuntimeError("x"), ExitCode.FAILED),
])
def test_exit_code_for(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) == code


def test_deadline_forms() -> None:
    d = Deadline.after(10)
    assert 9.5 < d.remaining() <= 10
    assert Deadline(time.monotonic() - 1).expired() and Deadline.after(-5).remaining() == 0
    wall = Deadline.at(datetime.now(UTC) + timedelta(seconds=20))
    assert 19 < wall.remaining() <= 20
    with pytest.raises(ValueError, match="timezone-aware"):
        Deadline.at(datetime.now() + timedelta(seconds=5))
    both = as_deadline(Deadline.after(100), 5)
    assert both is not None and both.remaining() <= 5  # the earlier wins
    assert as_deadline(None, None) is None
    with pytest.raises(TypeError, match="deadline_s=seconds"):
        as_deadline(time.monotonic() + 600)  # type: ignore[arg-type]
    assert Deadline.after(3).bound(30) <= 3 and Deadline.after(-1).bound(30, floor=1.0) == 1.0
