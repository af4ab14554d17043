"""Kafka under faults: Toxiproxy between the engine and a private broker, and real broker restarts.

Each backup test backs the session's source topic up into a fresh local folder (storage is not the
subject here), breaks the network or the broker while the run fetches (``on_progress`` fires once
a share of the offsets has been read), and then checks what must hold whatever the run's outcome:
it returned by its deadline, what it committed is a gap-free, byte-exact prefix of the source that
``verify`` accepts, the next run completes, and a full restore equals the source.  The restore
tests break the broker while a restore produces, then re-run it: the target must end an exact copy.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_backup import Deadline, ExitCode
from kafka_backup.errors import KafkaBackupError
from kafka_backup.restore import RestoreOptions, run_restore
from kafka_backup.storage import open_store

from tests.faults.conftest import (
    DEADLINE_SLACK_S,
    PrivateKafka,
    Proxy,
    Source,
    assert_target_equals_source,
    backup_settings,
    committed_prefix_intact,
    complete_and_exact,
    engine_records,
    on_progress,
    outcome,
    timed_backup,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.integration]


def logged_once(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """The engine's messages; fails if one is repeated for the same partition (a line per retry)."""
    seen: dict[tuple[str, object, object], int] = {}
    for r in engine_records(caplog, level):
        key = (r.getMessage(), getattr(r, "topic", None), getattr(r, "partition", None))
        seen[key] = seen.get(key, 0) + 1
    repeated = {k: n for k, n in seen.items() if n > 1}
    assert not repeated, f"logged more than once: {repeated}"
    return [k[0] for k in seen]


def test_latency_while_fetching_completes(source: Source, kafka_proxy: Proxy, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture, fault_row: Callable[..., None]) -> None:
    url = f"file://{tmp_path}/bk"
    kafka_proxy.toxic("latency", latency=60, jitter=20)
    caplog.set_level(logging.INFO, logger="kafka_backup")
    run = timed_backup(backup_settings(source, url), deadline=Deadline.after(60))
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    assert run.result.records == source.count
    assert not engine_records(caplog, logging.WARNING), "a slow network is not an error"
    ends = committed_prefix_intact(open_store(url), source)
    kafka_proxy.clear()
    fault_row("Kafka latency 60±20 ms", "fetch", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, url))


def test_bandwidth_limit_stops_at_the_deadline_with_its_commits_intact(
        source: Source, kafka_proxy: Proxy, tmp_path: Path, fault_row: Callable[..., None]) -> None:
    url = f"file://{tmp_path}/bk"
    kafka_proxy.toxic("bandwidth", rate=24)  # KB/s: the topic would take about a minute
    run = timed_backup(backup_settings(source, url), deadline=Deadline.after(8))
    assert run.seconds < 8 + DEADLINE_SLACK_S, f"returned after {run.seconds:.1f}s"
    assert run.result.ok and run.result.exit_code == ExitCode.OK, run.result.summary()
    assert run.result.stop_reason == "deadline" and run.result.lag > 0
    ends = committed_prefix_intact(open_store(url), source)
    assert 0 < sum(ends.values()) < source.count, ends
    kafka_proxy.clear()
    fault_row("Kafka bandwidth 24 KB/s, deadline 8 s", "fetch", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, url))


@pytest.mark.parametrize("fault", ["reset_peer", "down"])
def test_connection_resets_and_a_proxy_outage_while_fetching_are_retried(
        fault: str, source: Source, kafka_proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        fault_row: Callable[..., None]) -> None:
    """Resets for 2 s, or the proxy down for 4 s, in the middle of the fetches: the raw fetch
    retries within its timeout (10 s here) and the run completes; the recovery is logged once."""
    url = f"file://{tmp_path}/bk"
    caplog.set_level(logging.INFO, logger="kafka_backup")

    def inject() -> None:
        if fault == "reset_peer":
            kafka_proxy.toxic("reset_peer", timeout=0)
            kafka_proxy.later(2.0, kafka_proxy.clear)
        else:
            kafka_proxy.down()
            kafka_proxy.later(4.0, kafka_proxy.up)

    run = timed_backup(backup_settings(source, url), deadline=Deadline.after(60),
                       progress=on_progress(0.3, inject, source.count))
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    messages = logged_once(caplog)
    assert any("recovered after" in m for m in messages), f"the retried fetch must say what happened: {messages}"
    ends = committed_prefix_intact(open_store(url), source)
    kafka_proxy.clear()
    label = "Kafka connections reset for 2 s" if fault == "reset_peer" else "Kafka proxy down for 4 s"
    fault_row(label, "fetch", outcome(run, ends, source), run.seconds, complete_and_exact(source, url))


def test_half_open_connection_is_bounded_by_the_deadline(source: Source, kafka_proxy: Proxy, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture,
                                                         fault_row: Callable[..., None]) -> None:
    """The timeout toxic swallows every byte and never closes: nothing comes back, nothing fails
    fast.  The run must give up by its deadline, keep what it committed, and say why once."""
    url = f"file://{tmp_path}/bk"
    caplog.set_level(logging.INFO, logger="kafka_backup")
    run = timed_backup(backup_settings(source, url), deadline=Deadline.after(12),
                       progress=on_progress(0.3, lambda: kafka_proxy.toxic("timeout", timeout=0), source.count))
    assert run.seconds < 12 + DEADLINE_SLACK_S, f"returned after {run.seconds:.1f}s"
    ends = committed_prefix_intact(open_store(url), source)
    assert 0 < sum(ends.values()) < source.count
    assert run.result.lag > 0
    for failed in run.result.errors:
        assert failed.error and "retries in" in failed.error, failed.error  # what, how often, how long
    logged_once(caplog, logging.WARNING)
    fault_row("Kafka half-open (timeout toxic), deadline 12 s", "fetch", outcome(run, ends, source), run.seconds,
              "(below, after the next run)")
    # The next scheduled run meets the same half-open broker from its start: bounded as well, and
    # reported as "Kafka could not be reached" (exit 4), once.
    caplog.clear()
    blocked = timed_backup(backup_settings(source, url), deadline=Deadline.after(6))
    assert blocked.seconds < 6 + DEADLINE_SLACK_S, f"returned after {blocked.seconds:.1f}s"
    assert blocked.result.exit_code == ExitCode.UNREACHABLE, blocked.result.summary()
    assert len(engine_records(caplog, logging.ERROR)) == 1, [r.getMessage() for r in engine_records(caplog)]
    assert committed_prefix_intact(open_store(url), source) == ends
    kafka_proxy.clear()
    fault_row("Kafka half-open from the start, deadline 6 s", "connect",
              f"failed: {blocked.result.error_type}, exit {int(blocked.result.exit_code)}, "
              f"{sum(ends.values())}/{source.count} still committed intact", blocked.seconds,
              complete_and_exact(source, url))


def test_broker_restart_during_a_backup(source: Source, private_kafka: PrivateKafka, kafka_proxy: Proxy,
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                        fault_row: Callable[..., None]) -> None:
    """The real broker process is stopped (SIGTERM) and started again on its data while the run
    fetches (slowed by 40 ms of latency, so that it is still fetching when the broker goes): the run
    either rides it out or fails those partitions, never with a hole."""
    url = f"file://{tmp_path}/bk"
    caplog.set_level(logging.INFO, logger="kafka_backup")
    kafka_proxy.toxic("latency", latency=40)
    away: list[float] = []
    restarting = threading.Thread(target=lambda: away.append(private_kafka.restart()), daemon=True)
    run = timed_backup(backup_settings(source, url, max_seconds=60),
                       progress=on_progress(0.2, restarting.start, source.count))
    ended = time.monotonic()
    restarting.join(120)
    assert away, "the broker did not come back"
    assert private_kafka.outages[-1][0] < ended, "the run ended before the broker went away: no fault was met"
    assert run.seconds < 60 + DEADLINE_SLACK_S
    result = run.result
    assert result.ok or result.exit_code in (ExitCode.FAILED, ExitCode.UNREACHABLE), result.summary()
    ends = committed_prefix_intact(open_store(url), source)
    logged_once(caplog)
    kafka_proxy.clear()
    fault_row(f"broker restart (away {away[0]:.0f} s)", "fetch", outcome(run, ends, source), run.seconds,
              complete_and_exact(source, url))


# ---------------------------------------------------------------------------------- restore
@pytest.fixture
def full_backup(source: Source, tmp_path: Path) -> str:
    url = f"file://{tmp_path}/bk"
    run = timed_backup(backup_settings(source, url))
    assert run.result.ok and run.result.stop_reason == "complete", run.result.summary()
    return url


def test_restore_killed_during_a_broker_restart_resumes_to_an_exact_copy(
        source: Source, private_kafka: PrivateKafka, kafka_proxy: Proxy, full_backup: str, tmp_path: Path,
        fault_row: Callable[..., None]) -> None:
    """A restore (the CLI, in its own process) is producing when the broker is stopped; while the
    broker is down the restore process is killed (kill -9, as a platform timeout would), then the
    broker starts again on its data.  Running the same restore again must resume from the
    checkpoint, skip what the killed run had committed after it, and leave an exact copy."""
    target = f"{source.topic}-r{uuid.uuid4().hex[:6]}"
    progress_dir = Path(full_backup.removeprefix("file://")) / "restores"
    kafka_proxy.toxic("latency", latency=30)  # so that the restore is still producing when the broker goes
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kafka_backup.cli", "restore", "--storage", full_backup,
                             "--bootstrap-servers", source.bootstrap, "--topic", source.topic, "--to-topic", target,
                             "--checkpoint-records", "300", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _checkpointed(progress_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the restore ended before the fault: {proc.stderr.read() if proc.stderr else ''}"
        private_kafka.restarts += 1
        private_kafka.stop()
        assert proc.poll() is None, "the restore finished before the broker was gone"
        proc.kill()
        proc.wait(30)
        kafka_proxy.clear()
        private_kafka.start()
    finally:
        if proc.poll() is None:
            proc.kill()
    seconds = time.monotonic() - t0
    second = run_restore(backup_settings(source, full_backup),
                         RestoreOptions(topic=source.topic, to_topic=target, checkpoint_records=300))
    compared = assert_target_equals_source(source, target)
    assert not all(p.already_done for p in second.partitions), "the killed run cannot have finished"
    assert 0 < second.records < source.count, "the re-run must resume, not start over"
    resumed = sum(p.resumed_skip for p in second.partitions)
    fault_row("broker stopped, restore killed -9, broker started", "restore produce",
              f"killed after its first checkpoint; re-run restored the remaining {second.records} "
              f"({resumed} found committed past the checkpoint)", seconds,
              f"source {source.count} = restored {compared}")


def _checkpointed(progress_dir: Path) -> bool:
    """True once a restore progress record names a next offset (one transaction committed)."""
    for path in progress_dir.glob("*/*/*.json"):
        try:
            if json.loads(path.read_text()).get("next_source_offset") is not None:
                return True
        except (OSError, ValueError):
            continue
    return False


@pytest.mark.parametrize("fault", ["down", "reset_peer"])
def test_restore_interrupted_while_producing_resumes_to_an_exact_copy(
        fault: str, source: Source, kafka_proxy: Proxy, full_backup: str, fault_row: Callable[..., None]) -> None:
    """The proxy goes down for 5 s, or connections are reset for 2 s, while the restore produces
    (checkpoints every 400 records).  Whether that run survives or fails, the same restore run again
    ends with the target an exact copy: nothing lost, nothing twice."""
    target = f"{source.topic}-r{uuid.uuid4().hex[:6]}"
    opts = RestoreOptions(topic=source.topic, to_topic=target, checkpoint_records=400)

    def inject() -> None:
        if fault == "down":
            kafka_proxy.down()
            kafka_proxy.later(5.0, kafka_proxy.up)
        else:
            kafka_proxy.toxic("reset_peer", timeout=0)
            kafka_proxy.later(2.0, kafka_proxy.clear)

    fired = threading.Event()

    def progress(_label: str, _offset: int, _end: int) -> None:
        if not fired.is_set():
            fired.set()
            inject()

    first: Any
    t0 = time.monotonic()
    try:
        first = run_restore(backup_settings(source, full_backup), opts, progress=progress)
    except KafkaBackupError as exc:
        first = exc
    seconds = time.monotonic() - t0
    assert fired.is_set(), "the fault was never injected"
    kafka_proxy.clear()
    second = run_restore(backup_settings(source, full_backup), opts)
    compared = assert_target_equals_source(source, target)
    if isinstance(first, BaseException):
        skipped = sum(p.resumed_skip for p in second.partitions)
        state = f"failed ({type(first).__name__}); re-run resumed ({skipped} found already written)"
    else:
        state = f"completed {first.records} records; re-run found every partition done"
        assert all(p.already_done for p in second.partitions)
    label = {"down": "Kafka proxy down for 5 s", "reset_peer": "Kafka connections reset for 2 s"}[fault]
    fault_row(label, "restore produce", state, seconds, f"source {source.count} = restored {compared}")
