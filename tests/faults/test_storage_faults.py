"""Storage under faults: Toxiproxy in front of LocalStack S3 and Azurite, and a throttling proxy
that answers 503 SlowDown / 500 for a stretch of requests.

The engine sees only a storage URL whose endpoint is the proxy.  Kafka is the private broker with
a clean proxy (the subject here is storage).  Each test checks, whatever the run's outcome under
the fault: it returned by its deadline, every committed segment is fully stored (``verify``
re-reads each one) and the committed chain is a gap-free, byte-exact prefix of the source; after
the fault the next run completes and a full restore equals the source.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

import pytest
from kafka_backup import Deadline, ExitCode
from kafka_backup.restore import RestoreOptions, run_restore

from tests.faults.conftest import (
    DEADLINE_SLACK_S,
    Source,
    assert_target_equals_source,
    backup_settings,
    committed_prefix_intact,
    complete_and_exact,
    engine_records,
    on_progress,
    outcome,
    storage_via,
    timed_backup,
)
from tests.faults.test_kafka_faults import logged_once

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.integration]

#: Fast retries for the tests (the defaults back off up to 15 s); still obstore's own retry loop.
QUICK_RETRIES = {"retry_backoff_initial_seconds": "0.05", "retry_backoff_max_seconds": "1"}


@pytest.fixture
def prefix() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------- Toxiproxy
@pytest.mark.parametrize("backend", ["s3", "azure"])
def test_latency_to_storage_completes(backend: str, source: Source, prefix: str, request: pytest.FixtureRequest,
                                      caplog: pytest.LogCaptureFixture, fault_row: Callable[..., None]) -> None:
    where = storage_via(backend, request, prefix)
    assert where.proxy is not None
    where.proxy.toxic("latency", latency=60, jitter=20)
    where.proxy.toxic("latency", stream="upstream", latency=20)
    run = timed_backup(backup_settings(source, where.url, segment_max_bytes=64 << 10), deadline=Deadline.after(90))
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    assert not engine_records(caplog), "a slow store is not an error"
    ends = committed_prefix_intact(where.store(), source)
    where.proxy.clear()
    fault_row(f"{backend} latency 60±20 ms", "upload + commit", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, where.url))


def test_upload_bandwidth_limit_stops_at_the_deadline_with_its_commits_intact(
        source: Source, prefix: str, request: pytest.FixtureRequest, fault_row: Callable[..., None]) -> None:
    where = storage_via("s3", request, prefix)
    assert where.proxy is not None
    where.proxy.toxic("bandwidth", stream="upstream", rate=8)  # KB/s towards the store
    run = timed_backup(backup_settings(source, where.url), deadline=Deadline.after(8))
    assert run.seconds < 8 + DEADLINE_SLACK_S, f"returned after {run.seconds:.1f}s"
    ends = committed_prefix_intact(where.store(), source)
    assert sum(ends.values()) < source.count and run.result.lag > 0, ends
    where.proxy.clear()
    fault_row("s3 upload bandwidth 8 KB/s, deadline 8 s", "upload", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, where.url))


@pytest.mark.parametrize(("backend", "fault"), [("s3", "reset_peer"), ("azure", "reset_peer"), ("s3", "down"),
                                                ("azure", "down")])
def test_resets_and_an_outage_of_the_store_are_retried(
        backend: str, fault: str, source: Source, prefix: str, request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture, fault_row: Callable[..., None]) -> None:
    """Connections reset for 2 s, or the store unreachable for 3 s, while segments and commit
    records are being written: obstore retries connection errors and dropped connections with
    backoff, and uploads ride it out.  A create-only commit write whose request went out but whose
    answer never came is not retried by obstore (it cannot know whether it landed): that partition
    stops for this run with one error naming the store, the retries and the time."""
    where = storage_via(backend, request, prefix)  # the default retry settings
    proxy = where.proxy
    assert proxy is not None

    def inject() -> None:
        if fault == "reset_peer":
            proxy.toxic("reset_peer", stream="upstream", timeout=0)
            proxy.later(2.0, proxy.clear)
        else:
            proxy.down()
            proxy.later(3.0, proxy.up)

    caplog.set_level(logging.INFO, logger="kafka_backup")
    run = timed_backup(backup_settings(source, where.url), deadline=Deadline.after(60),
                       progress=on_progress(0.2, inject, source.count))
    result = run.result
    assert result.stop_reason == "complete", result.summary()
    if not result.ok:  # an unanswered create, or a retry budget spent inside the stretch: said once
        assert result.exit_code == ExitCode.FAILED
        for failed in result.errors:  # the store, the operation and key, how long (and how often) retried
            assert failed.error and re.search(rf"{backend[:2]}://\S+: .* in [\d.]+m?s", failed.error), failed.error
    logged_once(caplog, logging.WARNING)
    ends = committed_prefix_intact(where.store(), source)
    proxy.clear()
    label = f"{backend} connections reset for 2 s" if fault == "reset_peer" else f"{backend} proxy down for 3 s"
    fault_row(label, "upload + commit", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, where.url))


@pytest.mark.parametrize("backend", ["s3", "azure"])
def test_half_open_store_is_bounded_by_the_deadline(backend: str, source: Source, prefix: str,
                                                    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
                                                    fault_row: Callable[..., None]) -> None:
    """Every byte to the store is swallowed and nothing is closed: obstore's request timeout and
    retries must be what the deadline allows, not 30 s x 10 retries."""
    where = storage_via(backend, request, prefix)
    proxy = where.proxy
    assert proxy is not None
    run = timed_backup(backup_settings(source, where.url), deadline=Deadline.after(12),
                       progress=on_progress(0.2, lambda: proxy.toxic("timeout", stream="upstream", timeout=0),
                                            source.count))
    assert run.seconds < 12 + DEADLINE_SLACK_S, f"returned after {run.seconds:.1f}s"
    proxy.clear()
    ends = committed_prefix_intact(where.store(), source)
    assert sum(ends.values()) < source.count
    logged_once(caplog, logging.WARNING)
    fault_row(f"{backend} half-open (timeout toxic), deadline 12 s", "upload + commit",
              outcome(run, ends, source), run.seconds, complete_and_exact(source, where.url))


# ---------------------------------------------------------------------------- HTTP errors
@pytest.mark.parametrize(("status", "phase", "path"), [(503, "upload", r"/segments/"), (500, "commit", r"/commits/")])
def test_a_stretch_of_server_errors_is_retried(status: int, phase: str, path: str, source: Source, prefix: str,
                                               request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
                                               fault_row: Callable[..., None]) -> None:
    where = storage_via("s3-throttle", request, prefix, **QUICK_RETRIES)
    throttle = where.throttle
    assert throttle is not None
    rule = throttle.fail(status, 6, method="PUT", path=path)
    run = timed_backup(backup_settings(source, where.url, segment_max_bytes=64 << 10), deadline=Deadline.after(60))
    assert rule.served == 6, "the stretch of errors was not met"
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    assert not engine_records(caplog), "retried errors that ended in success are not the run's errors"
    ends = committed_prefix_intact(where.store(), source)
    fault_row(f"{status} {'SlowDown' if status == 503 else 'InternalError'} x6", phase,
              outcome(run, ends, source), run.seconds, complete_and_exact(source, where.url))


def test_a_commit_whose_answer_was_lost_is_recognised_as_ours(
        source: Source, prefix: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
        fault_row: Callable[..., None]) -> None:
    """The commit record's create-only write reaches the store, but the client gets a 500 and
    retries; the retry meets "already exists".  That is this run's own record, not a lost race:
    taking it for one would delete the segment the record commits."""
    where = storage_via("s3-throttle", request, prefix, **QUICK_RETRIES)
    throttle = where.throttle
    assert throttle is not None
    rule = throttle.fail(500, 3, method="PUT", path=r"/commits/", forward=True)
    caplog.set_level(logging.INFO, logger="kafka_backup")
    run = timed_backup(backup_settings(source, where.url, segment_max_bytes=64 << 10), deadline=Deadline.after(60))
    assert rule.served == 3
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    assert sum(p.conflicts for p in run.result.partitions) == 0, "our own commit was taken for another run's"
    ends = committed_prefix_intact(where.store(), source)
    fault_row("500 after the write landed x3 (answer lost)", "commit", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, where.url))


def test_persistent_throttling_fails_the_partitions_once_and_keeps_the_commits(
        source: Source, prefix: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
        fault_row: Callable[..., None]) -> None:
    """503 for every segment upload after the first few commits, past the retry budget (2 retries):
    each partition fails with one error that names the store, the retries and the time; the run
    exits 1 and what it committed before stays intact."""
    where = storage_via("s3-throttle", request, prefix, retry_max_retries="2", **QUICK_RETRIES)
    throttle = where.throttle
    assert throttle is not None
    caplog.set_level(logging.INFO, logger="kafka_backup")
    run = timed_backup(backup_settings(source, where.url), deadline=Deadline.after(60),
                       progress=on_progress(0.3, lambda: throttle.fail(503, 10**6, method="PUT", path=r"/segments/"),
                                            source.count))
    result = run.result
    assert result.exit_code == ExitCode.FAILED and len(result.errors) == len(source.rows), result.summary()
    for failed in result.errors:
        assert failed.error and "s3://" in failed.error and "after 2 retries" in failed.error, failed.error
        assert "503" in failed.error
    errors = [m for m in logged_once(caplog, logging.ERROR)]
    assert len(errors) == len(source.rows), errors
    throttle.clear()
    ends = committed_prefix_intact(where.store(), source)
    assert 0 < sum(ends.values()) < source.count
    fault_row("503 SlowDown on every upload (past 2 retries)", "upload", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, where.url))


def test_restore_reads_through_a_stretch_of_throttling(source: Source, prefix: str,
                                                       request: pytest.FixtureRequest,
                                                       fault_row: Callable[..., None]) -> None:
    where = storage_via("s3-throttle", request, prefix, **QUICK_RETRIES)
    throttle = where.throttle
    assert throttle is not None
    first = timed_backup(backup_settings(source, where.url, segment_max_bytes=64 << 10))
    assert first.result.ok and first.result.stop_reason == "complete"
    rule = throttle.fail(503, 8, method="GET", path=r"/segments/")
    target = f"{source.topic}-r{uuid.uuid4().hex[:6]}"
    result = run_restore(backup_settings(source, where.url), RestoreOptions(topic=source.topic, to_topic=target))
    assert rule.served == 8
    compared = assert_target_equals_source(source, target)
    fault_row("503 SlowDown x8 on segment reads", "restore read", f"completed {result.records} records",
              result.duration_seconds, f"source {source.count} = restored {compared}")
