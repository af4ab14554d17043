"""One bounded backup run: settings and a deadline in, a typed :class:`RunResult` out.

Per partition and run:

1. ``start`` = end of the committed chain (or the configured start for a new partition);
   ``target`` = the partition's last stable offset, snapshotted once at run start.  The run never
   reads past ``target``, so a producer that never stops cannot make a run unbounded.
2. Batches are fetched raw (never decoded), CRC-checked and packed into segments; completion is
   decided by the fetch position, never by counting records, so compaction holes, transaction
   markers and aborted records cannot stall a run.
3. Each segment is uploaded under a run-unique key, then made part of the backup by creating its
   commit record with a create-only write.  A run that loses that race deletes its segment and
   continues from the winner's end.  The head hint is written last and is only a shortcut.
4. Offsets that retention deleted before they were backed up become explicit ``gap`` records.

Budgets (records, bytes, seconds, the caller's deadline) stop the run early; what is done is
committed.  Partitions are served round-robin one segment at a time, so under a tight deadline
every partition advances instead of the first one taking the whole run.

Example::

    result = run_backup(load_settings("backup.yaml"), deadline_s=840)
    print(result.records, result.lag, result.gap_offsets)
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import _failpoints
from ._batches import BatchFormatError, BatchHeader, scan
from ._kafka_raw import FetchedPartition, RawKafka
from .catalog import (
    CommitRecord,
    Head,
    PartitionChain,
    claim_topic_id,
    encode_topic,
    now_iso,
    sweep_orphans,
    utc_stamp,
    write_json,
)
from .cluster import Cluster, TopicInfo, client_kwargs
from .config import BackupConfig, Settings
from .deadline import Deadline, as_deadline
from .errors import (
    BackupIntegrityError,
    CorruptSegmentError,
    ExitCode,
    KafkaBackupError,
    KafkaClientError,
    RunFailedError,
    StorageError,
    exit_code_for,
)
from .segment import SealedSegment, SegmentData, SegmentWriter
from .storage import MULTIPART_CHUNK, Store, open_store

log = logging.getLogger("kafka_backup.backup")

StopReason = Literal["complete", "deadline", "max_seconds", "max_records", "max_bytes", "error"]
PartitionStatus = Literal["complete", "partial", "deferred", "error"]
_EMPTY_FETCHES_BEFORE_GIVING_UP = 3
_MAX_PREFETCHED_PARTITIONS = 8
_STORE_CONCURRENCY = 16
#: Blocks (1 MiB of batches each) that may wait for the zstd threads at once.
_COMPRESSION_BACKLOG = 8
#: Planning reads (hint, probe, anchor) are small GETs: latency-bound on a real store.
_PLAN_CONCURRENCY = 32
#: Partitions named in one FetchRequest (the response stays bounded by fetch_max_bytes).
_PARTITIONS_PER_FETCH = 1000


class _InFlight:
    """Bounds the bytes of finished segments waiting for upload: memory stays about two segments
    (one filling, one uploading) however many partitions commit at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self.bytes and self.bytes + n > self.limit:
                self._cond.wait()
            self.bytes += n

    def release(self, n: int) -> None:
        with self._cond:
            self.bytes -= n
            self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets [start, end) that retention removed before they were backed up."""

    topic: str
    partition: int
    start: int
    end: int
    detected_at: str

    @property
    def count(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PartitionResult:
    topic: str
    partition: int
    status: PartitionStatus
    start_offset: int | None  # chain end before this run (None: nothing was committed)
    end_offset: int | None  # chain end after this run
    target_offset: int | None  # last stable offset snapshotted at run start
    records: int = 0
    batches: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    segments: int = 0
    conflicts: int = 0
    gaps: tuple[Gap, ...] = ()
    error: str | None = None
    #: timestamp (epoch ms) of the oldest record not yet backed up, when the run saw it (the
    #: partition's recovery point); None when everything is backed up or it was not seen
    oldest_unbacked_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (``dataclasses.asdict`` deep-copies, which costs seconds at thousands of partitions)."""
        doc = {f: getattr(self, f) for f in self.__dataclass_fields__}
        doc["gaps"] = [{f: getattr(g, f) for f in g.__dataclass_fields__} for g in self.gaps]
        doc["lag"] = self.lag
        return doc

    @property
    def lag(self) -> int:
        """Offsets below the run's snapshot that are still not backed up."""
        if self.target_offset is None:
            return 0
        return max(0, self.target_offset - (self.end_offset or 0))


MetricUnit = Literal["Count", "Bytes", "Seconds"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure of a run, named and unit-tagged as a platform's metrics API expects."""

    name: str
    value: float
    unit: MetricUnit


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """A run's figures plus the dimensions they belong to (``service``, ``shard``)."""

    dimensions: dict[str, str]
    figures: tuple[Metric, ...]

    def as_dict(self) -> dict[str, float]:
        return {m.name: m.value for m in self.figures}


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run.  ``error`` is set when the run failed as a whole (see
    :func:`run_backup`'s ``raise_on_error``); ``partitions`` then holds what was planned, if anything."""

    run_id: str
    started_at: str
    finished_at: str
    duration_seconds: float
    stop_reason: StopReason
    partitions: tuple[PartitionResult, ...]
    storage: str
    job: str | None = None
    shard: str = "0/1"
    #: seconds left before the caller's deadline when the run returned (None: no deadline)
    time_left_seconds: float | None = None
    error: str | None = None
    error_type: str | None = None
    error_exit_code: int | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def raw_bytes(self) -> int:
        return sum(p.raw_bytes for p in self.partitions)

    @property
    def stored_bytes(self) -> int:
        return sum(p.stored_bytes for p in self.partitions)

    @property
    def segments(self) -> int:
        return sum(p.segments for p in self.partitions)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def gaps(self) -> tuple[Gap, ...]:
        return tuple(g for p in self.partitions for g in p.gaps)

    @property
    def gap_offsets(self) -> int:
        return sum(g.count for g in self.gaps)

    @property
    def errors(self) -> tuple[PartitionResult, ...]:
        return tuple(p for p in self.partitions if p.status == "error")

    @property
    def rpo_seconds(self) -> float:
        """Age of the oldest record known not to be in the backup, worst partition (0: none known)."""
        oldest = [p.oldest_unbacked_ms for p in self.partitions if p.oldest_unbacked_ms is not None]
        if not oldest:
            return 0.0
        try:
            finished = datetime.fromisoformat(self.finished_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            finished = time.time()
        return round(max(0.0, finished - min(oldest) / 1000), 3)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.errors

    @property
    def exit_code(self) -> ExitCode:
        """The same code the CLI exits with: failures outrank gaps (a gap is recorded loss)."""
        if self.error is not None:
            return ExitCode(self.error_exit_code or ExitCode.FAILED)
        if self.errors:
            return ExitCode.FAILED
        return ExitCode.GAPS if self.gaps else ExitCode.OK

    @classmethod
    def not_started(cls, exc: BaseException, *, settings: Settings | None = None,
                    deadline: Deadline | None = None) -> RunResult:
        """The result of a run that failed before it began (bad payload or settings, no storage):
        handlers log and publish it like any other, so every tick leaves one summary line."""
        shard = f"{settings.backup.shard.index}/{settings.backup.shard.count}" if settings else "0/1"
        return cls(run_id=uuid.uuid4().hex[:16], started_at=now_iso(), finished_at=now_iso(), duration_seconds=0.0,
                   stop_reason="error", partitions=(), storage=settings.storage.display() if settings else "",
                   job=settings.job if settings else None, shard=shard,
                   time_left_seconds=None if deadline is None else round(deadline.remaining(), 3),
                   error=str(exc), error_type=type(exc).__name__, error_exit_code=int(exit_code_for(exc)),
                   exception=exc)

    @property
    def log_level(self) -> int:
        """How loud the summary line should be: ERROR for a failure, WARNING for gaps, else INFO."""
        if not self.ok:
            return logging.ERROR
        return logging.WARNING if self.gaps else logging.INFO

    def raise_for_status(self) -> None:
        """Raise :class:`RunFailedError` if the run failed (whole or in part); gaps do not raise.

        Handlers call this *after* logging and flushing metrics, so the platform's retry and error
        alarm fire while everything committed stays committed.
        """
        if self.ok:
            return
        if self.error is not None:
            raise RunFailedError(f"backup run {self.run_id} failed: {self.error}", exit_code=self.exit_code) \
                from self.exception
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more partition(s))" if len(self.errors) > 1 else ""
        raise RunFailedError(f"backup run {self.run_id}: {first.topic}[{first.partition}] failed: "
                             f"{first.error}{more}", exit_code=self.exit_code)

    def metrics(self, *, service: str | None = None) -> RunMetrics:
        """Named figures with units, for CloudWatch EMF, Azure Monitor or Cloud Monitoring."""
        statuses = [p.status for p in self.partitions]
        figures = (
            Metric("Records", self.records, "Count"),
            Metric("BatchBytesRead", self.raw_bytes, "Bytes"),
            Metric("BytesStored", self.stored_bytes, "Bytes"),
            Metric("Segments", self.segments, "Count"),
            Metric("PartitionsComplete", statuses.count("complete"), "Count"),
            Metric("PartitionsPartial", statuses.count("partial"), "Count"),
            Metric("PartitionsDeferred", statuses.count("deferred"), "Count"),
            Metric("PartitionsError", statuses.count("error"), "Count"),
            Metric("LagRecords", self.lag, "Count"),
            Metric("GapOffsets", self.gap_offsets, "Count"),
            Metric("RpoSeconds", self.rpo_seconds, "Seconds"),
            Metric("RunSeconds", self.duration_seconds, "Seconds"),
            *([Metric("TimeLeftSeconds", self.time_left_seconds, "Seconds")]
              if self.time_left_seconds is not None else []),
            Metric("RunFailed", 0 if self.error is None else 1, "Count"),
        )
        dims = {"shard": self.shard}
        if service:
            dims["service"] = service
        return RunMetrics(dims, figures)

    def summary_line(self) -> str:
        """The one-line human summary (what the CLI prints last)."""
        from .report import human_bytes

        if self.error is not None:
            not_started = "not started" if not self.partitions and self.duration_seconds == 0 else "failed"
            return f"backup run {self.run_id} {not_started} ({self.error_type}): {self.error}"
        return (f"total: {self.records} records, {human_bytes(self.raw_bytes)} read, "
                f"{human_bytes(self.stored_bytes)} stored, {self.segments} segments, lag {self.lag}, "
                f"gaps {self.gap_offsets}, {self.duration_seconds:.1f}s, stopped: {self.stop_reason}")

    def summary(self, *, service: str | None = None) -> dict[str, Any]:
        """The run's structured summary log fields (``event="backup_run"``): one line per run."""
        doc: dict[str, Any] = {"event": "backup_run", "run_id": self.run_id, "ok": self.ok,
                               "exit_code": int(self.exit_code), "stop_reason": self.stop_reason,
                               "storage": self.storage, "shard": self.shard, "partitions": len(self.partitions)}
        if self.job:
            doc["job"] = self.job
        if service:
            doc["service"] = service
        doc.update({_snake(m.name): m.value for m in self.metrics().figures})
        if self.error is not None:
            doc.update(error=self.error, error_type=self.error_type)
        elif self.errors:
            doc["failed_partitions"] = [f"{p.topic}[{p.partition}]: {p.error}" for p in self.errors[:10]]
        return doc

    def to_dict(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "exception"}
        doc["partitions"] = [p.to_dict() for p in self.partitions]
        doc.update(records=self.records, raw_bytes=self.raw_bytes, stored_bytes=self.stored_bytes,
                   segments=self.segments, lag=self.lag, gap_offsets=self.gap_offsets, ok=self.ok,
                   exit_code=int(self.exit_code), rpo_seconds=self.rpo_seconds)
        return doc


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _still_open(aborted: tuple[tuple[int, int], ...], records: bytes | memoryview,
                done: list[BatchHeader]) -> tuple[tuple[int, int], ...]:
    """The aborted transactions of a fetch that still matter after the batches in ``done``.

    The broker lists every aborted transaction overlapping the fetched range.  When a fetch is
    split across two segments, a transaction whose abort marker is in the first part must not be
    listed in the second, or a reader would treat that producer's later (committed) batches as
    aborted.  Control batches are tiny, so decoding them here is cheap.
    """
    if not aborted:
        return aborted
    from kafka.record.default_records import DefaultRecordBatch

    markers: dict[int, list[int]] = {}
    for h in done:
        if h.is_control:
            for rec in DefaultRecordBatch(bytes(records[h.position : h.position + h.size])):
                if rec.abort:
                    markers.setdefault(h.producer_id, []).append(rec.offset)
    return tuple((pid, first) for pid, first in aborted
                 if not any(m >= first for m in markers.get(pid, ())))


def shard_of(topic: str, partition: int, count: int) -> int:
    """Stable shard of a partition: adding partitions never moves existing ones."""
    return zlib.crc32(f"{topic}\x00{partition}".encode()) % count


#: The run stops starting new work when less than this share of its time budget is left (at most
#: COMMIT_RESERVE_MAX_SECONDS): the segment in hand is finished, uploaded and committed in it.
COMMIT_RESERVE_SHARE = 0.1
COMMIT_RESERVE_MAX_SECONDS = 30.0


class _OutOfTime(Exception):
    """The deadline (less the commit reserve) passed between two phases; ``phase`` names the next."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


class _Budget:
    def __init__(self, cfg: BackupConfig, deadline: Deadline | None) -> None:
        self.t0 = time.monotonic()
        limit = Deadline.after(cfg.max_seconds) if cfg.max_seconds is not None else None
        self.deadline = limit.earliest(deadline) if limit is not None else deadline
        self.limit_reason: StopReason = "max_seconds" if limit is not None and (
            deadline is None or limit.monotonic <= deadline.monotonic) else "deadline"
        total = self.deadline.remaining() if self.deadline is not None else 0.0
        self.reserve = min(COMMIT_RESERVE_MAX_SECONDS, COMMIT_RESERVE_SHARE * total)
        self.max_records = cfg.max_records
        self.max_bytes = cfg.max_bytes
        self.records = 0
        self.bytes = 0

    def out_of_time(self) -> bool:
        return self.deadline is not None and self.deadline.expired(self.reserve)

    def exhausted(self) -> StopReason | None:
        if self.max_records is not None and self.records >= self.max_records:
            return "max_records"
        if self.max_bytes is not None and self.bytes >= self.max_bytes:
            return "max_bytes"
        if self.out_of_time():
            return self.limit_reason
        return None

    def timeout(self, seconds: float) -> float:
        """A per-call timeout that never runs past the deadline (at least 1 s, to make progress)."""
        return self.deadline.bound(seconds, floor=1.0) if self.deadline is not None else seconds


@dataclass
class _Job:
    """Mutable per-partition progress inside one run."""

    topic: str
    partition: int
    chain: PartitionChain
    target: int
    pos: int = -1
    before: int | None = None
    sweep_from: int = 0
    done: bool = False
    records: int = 0
    batches: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    segments: int = 0
    conflicts: int = 0
    gaps: list[Gap] = field(default_factory=list)
    error: str | None = None
    leftover: _Chunk | None = None  # fetched batches that did not fit the last segment
    prefetch: tuple[int, Future[FetchedPartition]] | None = None  # the next fetch, already in flight
    ready: tuple[int, FetchedPartition] | None = None  # this partition's share of a multi-partition fetch
    commit: Future[None] | None = None  # the segment being uploaded and committed in the background
    committed: int | None = None  # the chain end known to be committed (what the hint may say)
    hint: tuple[int, int] | None = None  # (end, sweep_from) of the head hint as read at planning
    checked: bool = False  # the write policy was applied to this partition in this run
    deferred: bool = False  # the write policy left this partition for a later run
    oldest_ms: int | None = None  # timestamp of the first record not yet backed up, once seen


@dataclass(frozen=True, slots=True)
class _Chunk:
    records: bytes | memoryview  # a view of the fetch response (see FetchedPartition.records)
    headers: list[BatchHeader]
    aborted: tuple[tuple[int, int], ...]


class BackupRun:
    """Executes one run. Prefer :func:`run_backup`; this class exists for tests and the CLI.

    Phases, each entered only while time is left (``_enter``): connect, select (topics and their
    ids), metadata (configs and group offsets), snapshot (end offsets), plan (chain ends,
    anchors), sweep (orphans), then the fetch/commit loop, which stops starting segments once the
    commit reserve is reached.  Every Kafka call's timeout is capped by the time left.
    """

    def __init__(self, settings: Settings, *, deadline: Deadline | None = None, store: Store | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.settings = settings
        self.cfg = settings.backup
        self.run_id = uuid.uuid4().hex[:16]
        self.budget = _Budget(settings.backup, deadline)
        self.caller_deadline = deadline
        self.progress = progress
        self.phase = "start"
        self.shard = f"{self.cfg.shard.index}/{self.cfg.shard.count}"
        self._log_extra: dict[str, Any] = {"run_id": self.run_id, "shard": self.shard}
        if settings.job:
            self._log_extra["job"] = settings.job
        # Every storage call (retries included) ends before the run's deadline.
        self.store = (store or open_store(settings.storage)).bounded(self.budget.deadline)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kb-zstd")
        # Blocks queued for compression (each holds views of fetched buffers): enough to keep both
        # zstd threads busy, few enough that packing cannot run a segment ahead of them.
        self._backlog = threading.BoundedSemaphore(_COMPRESSION_BACKLOG)
        # Fetches run one ahead of packing: the broker round trip overlaps CRC checks, compression
        # and uploads (kafka-python's IO thread does the socket work either way).
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-fetch")
        self._committer = ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-commit")
        # One finished segment uploads while the next fills; small segments may overlap a few more.
        self._inflight = _InFlight(max(self.cfg.segment_max_bytes // 4, MULTIPART_CHUNK))
        self._retention_ms: dict[str, int] = {}
        self._configs: dict[str, dict[str, Any]] | None = None
        self._groups: dict[str, dict[tuple[str, int], Any]] | None = None

    def _extra(self, job: _Job | None = None) -> dict[str, Any]:
        """``extra=`` fields for log records, so JSON loggers show run id, topic and partition."""
        if job is None:
            return self._log_extra
        return {**self._log_extra, "topic": job.topic, "partition": job.partition}

    def _enter(self, phase: str) -> None:
        self.phase = phase
        _failpoints.delay(phase)
        if self.budget.out_of_time():
            raise _OutOfTime(phase)

    def run(self) -> RunResult:
        started = now_iso()
        stop: StopReason = "complete"
        jobs: list[_Job] = []
        log.info("backup run %s to %s started", self.run_id, self.store.display, extra=self._extra())
        try:
            self._enter("connect")
            kafka_kw = client_kwargs(self.settings.kafka, self.budget.deadline)
            with Cluster(self.settings.kafka, deadline=self.budget.deadline) as cluster, RawKafka(**kafka_kw) as raw:
                try:
                    self._enter("select")
                    topics = cluster.select_topics(self.cfg)
                    refused = self._check_identity(topics)
                    accepted = {name: info for name, info in topics.items() if name not in refused}
                    if self.cfg.snapshot_metadata and accepted:
                        self._enter("metadata")
                        self._read_metadata(cluster, accepted)
                    self._enter("snapshot")
                    jobs = self._plan(cluster, topics, refused)
                    self._enter("sweep")
                    self._sweep(jobs)
                    stop = self._loop(cluster, raw, jobs)
                    self._write_metadata(accepted, jobs)
                except _OutOfTime as exc:
                    log.warning("deadline reached before phase %r; stopping with what is committed", exc.phase,
                                extra=self._extra())
                    stop = self.budget.limit_reason
                    self._write_heads([j for j in jobs if not j.done])
        except _OutOfTime as exc:
            log.warning("deadline reached before phase %r", exc.phase, extra=self._extra())
            stop = self.budget.limit_reason
        finally:
            self._fetcher.shutdown(wait=True, cancel_futures=True)
            self._committer.shutdown(wait=True)
            self._pool.shutdown(wait=True)
        result = self._result_of(started, stop, jobs)
        try:
            write_json(self.store, f"runs/{utc_stamp()}-{self.run_id}.json", result.to_dict())
        except StorageError as exc:  # the operations guide alarms on missing summaries: say why
            log.warning("run summary not written: %s", exc, extra=self._extra())
        return result

    def _result_of(self, started: str, stop: StopReason, jobs: list[_Job], *,
                   error: BaseException | None = None) -> RunResult:
        left = self.caller_deadline.remaining() if self.caller_deadline is not None else None
        return RunResult(
            run_id=self.run_id, started_at=started, finished_at=now_iso(),
            duration_seconds=round(time.monotonic() - self.budget.t0, 3), stop_reason=stop,
            partitions=tuple(self._result(j) for j in jobs), storage=self.store.display, job=self.settings.job,
            shard=self.shard, time_left_seconds=None if left is None else round(left, 3),
            error=None if error is None else str(error), error_type=None if error is None else type(error).__name__,
            error_exit_code=None if error is None else int(exit_code_for(error)), exception=error,
        )

    # identity --------------------------------------------------------------------------------
    def _check_identity(self, topics: dict[str, TopicInfo]) -> dict[str, str]:
        """Topics whose id differs from the one this backup recorded: name -> why (refused)."""
        def check(info: TopicInfo) -> tuple[str, str | None]:
            if info.topic_id is None:
                return info.name, None
            recorded = claim_topic_id(self.store, info.name, info.topic_id)
            if recorded == info.topic_id:
                return info.name, None
            return info.name, (f"topic {info.name!r} was deleted and recreated: this backup holds topic id "
                               f"{recorded}, the cluster has {info.topic_id}; nothing was written for it. Back "
                               "the new topic up to a new storage prefix (the old backup stays restorable)")

        with ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-ids") as pool:
            found = list(pool.map(check, topics.values()))
        refused = {name: why for name, why in found if why}
        for why in refused.values():
            log.error("%s", why, extra=self._extra())
        return refused

    # planning --------------------------------------------------------------------------------
    def _plan(self, cluster: Cluster, topics: dict[str, TopicInfo], refused: dict[str, str]) -> list[_Job]:
        shard = self.cfg.shard
        tps = [(t, p) for t, info in topics.items() for p in range(info.partitions)
               if shard.count == 1 or shard_of(t, p, shard.count) == shard.index]
        live = [tp for tp in tps if tp[0] not in refused]
        targets = cluster.offsets(live, "latest")
        self._enter("plan")

        def read_chain(tp: tuple[str, int]) -> tuple[Head | None, int | None, int | None] | KafkaBackupError:
            chain = PartitionChain(self.store, *tp)
            try:
                head = chain.read_head()
                if head is not None and head.end >= targets[tp]:
                    # The hint never leads the chain, so the chain already reaches this run's
                    # snapshot: nothing to fetch, and no probe needed (an idle partition costs one GET).
                    return head, head.end, None
                end = chain.find_end_from(head)
                return head, end, (chain.read_anchor() if end is None else None)
            except KafkaBackupError as exc:
                return exc

        # Object-store round trips dominate planning with many partitions: run them concurrently.
        with ThreadPoolExecutor(max_workers=_PLAN_CONCURRENCY, thread_name_prefix="kb-plan") as pool:
            chains = list(pool.map(read_chain, live))
        found_by_tp = dict(zip(live, chains, strict=True))
        # New partitions (no chain, no anchor) need their start offset: one batched ListOffsets
        # per spec for all of them, not one round trip each.
        fresh = [tp for tp, found in found_by_tp.items()
                 if not isinstance(found, KafkaBackupError) and found[1] is None and found[2] is None]
        initial = self._initial_offsets(cluster, fresh, targets)
        jobs = []
        for t, p in tps:
            chain = PartitionChain(self.store, t, p)
            job = _Job(t, p, chain, targets.get((t, p), 0))
            try:
                if t in refused:
                    raise BackupIntegrityError(refused[t])
                found = found_by_tp[(t, p)]
                if isinstance(found, KafkaBackupError):
                    raise found
                head, end, anchor = found
                job.before = end
                job.hint = (head.end, head.sweep_from) if head else None
                job.sweep_from = head.sweep_from if head else (end or 0)
                job.committed = end
                if end is not None:
                    job.pos = end
                elif anchor is not None:
                    job.pos = anchor
                else:
                    job.pos = chain.anchor(initial[(t, p)], topic_id=topics[t].topic_id)
                if job.pos > job.target:
                    # Legitimate only while a transaction is open above a recorded gap; past the high
                    # watermark it means the partition's log was replaced.
                    hw = cluster.offsets([(t, p)], "latest", committed=False)[(t, p)]
                    if job.pos > hw:
                        raise BackupIntegrityError(
                            f"backup already reaches offset {job.pos} but the partition ends at {hw}: the topic "
                            "was deleted and recreated or truncated; back it up to a new prefix")
                    job.target = job.pos
            except KafkaBackupError as exc:
                job.error, job.done = str(exc), True
                if t not in refused:
                    log.error("%s[%d]: %s", t, p, exc, extra=self._extra(job))
            jobs.append(job)
        # Most behind first, so a tight deadline serves the partitions that need it most.
        jobs.sort(key=lambda j: -(j.target - j.pos) if not j.done else 0)
        return jobs

    def _initial_offsets(self, cluster: Cluster, tps: list[tuple[str, int]],
                         targets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Where each new partition's chain begins (``backup.start``), never past its target."""
        if not tps:
            return {}
        start = self.cfg.start
        if start == "latest":
            return {tp: targets[tp] for tp in tps}
        spec: str | int = "earliest" if start == "earliest" else int(start)
        found = cluster.offsets(tps, spec)
        return {tp: min(found[tp], targets[tp]) for tp in tps}

    # the loop --------------------------------------------------------------------------------
    def _sweep(self, jobs: list[_Job]) -> None:
        """Sweep the partitions this run will write to.  An orphan is left by a run that had data
        to write, so it sits at or after the chain's end: it is swept by the next run that moves
        that partition (or by ``kafka-backup gc``), and idle partitions cost no listing."""
        busy = [j for j in jobs if not j.done and j.pos < j.target]
        with ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-sweep") as pool:
            list(pool.map(self._sweep_orphans, busy))

    def _loop(self, cluster: Cluster, raw: RawKafka, jobs: list[_Job]) -> StopReason:
        """Round-robin over the partitions, one segment each per round, until done or out of budget.

        Each round starts with one multi-partition fetch per broker for every partition that needs
        data (``_fetch_many``), so thousands of small partitions cost a few round trips, not one
        each.  Segments are uploaded and committed in the background (``_submit``), at most
        ``_STORE_CONCURRENCY`` at once and about one segment's bytes in flight, while the next one
        is filled; a partition's next segment waits for its previous commit, so a chain is always
        extended in order and a lost race is seen before more is read.
        """
        try:
            while True:
                for job in jobs:
                    if job.commit is not None and job.commit.done():
                        self._settle(job)
                active = [j for j in jobs if not j.done]
                if not active:
                    return "complete"
                keep_prefetch = len(active) <= _MAX_PREFETCHED_PARTITIONS  # each holds one fetch response
                self._fetch_many(raw, active)
                for job in active:
                    reason = self.budget.exhausted()
                    if reason is not None:
                        return reason
                    if not self._settle(job):
                        continue
                    try:
                        self._one_segment(cluster, raw, job)
                    except KafkaBackupError as exc:
                        log.error("%s[%d]: %s", job.topic, job.partition, exc, extra=self._extra(job))
                        job.error, job.done = str(exc), True
                    if job.done or not keep_prefetch:
                        job.prefetch = None
        finally:
            for job in jobs:
                self._settle(job)
            self._write_heads(jobs)

    def _settle(self, job: _Job) -> bool:
        """Wait for the job's background commit; False when the job is finished (done or failed)."""
        pending, job.commit = job.commit, None
        if pending is not None:
            try:
                pending.result()
            except KafkaBackupError as exc:
                log.error("%s[%d]: %s", job.topic, job.partition, exc, extra=self._extra(job))
                job.error, job.done = str(exc), True
                job.leftover = job.prefetch = job.ready = None
        return not job.done

    def _fetch_many(self, raw: RawKafka, active: list[_Job]) -> None:
        """One fetch (one request per leader) for every partition that needs data this round.

        Only worth it for two or more; a partition whose share came back empty is left to the
        single-partition path, which tells "nothing yet" from a real stall.  A failure here is
        not reported: the single-partition path meets it again and names the partition.
        """
        want = [j for j in active if j.commit is None and j.leftover is None and j.prefetch is None
                and j.ready is None and 0 <= j.pos < j.target]
        if len(want) < 2:
            return
        timeout = self.budget.timeout(self.settings.kafka.request_timeout_seconds)
        for start in range(0, len(want), _PARTITIONS_PER_FETCH):
            chunk = want[start:start + _PARTITIONS_PER_FETCH]
            _failpoints.delay("fetch")
            try:
                fetched = raw.fetch({(j.topic, j.partition): j.pos for j in chunk},
                                    max_bytes=self.cfg.fetch_max_bytes,
                                    partition_max_bytes=self.cfg.partition_fetch_max_bytes,
                                    max_wait_ms=int(min(100, timeout * 250)), timeout_s=timeout)
            except KafkaBackupError as exc:
                log.debug("multi-partition fetch failed, falling back to single fetches: %s", exc,
                          extra=self._extra())
                return
            for job in chunk:
                got = fetched[(job.topic, job.partition)]
                if got.records or got.out_of_range or got.log_start_offset > job.pos:
                    job.ready = (job.pos, got)
            if self.budget.out_of_time():
                return

    def _one_segment(self, cluster: Cluster, raw: RawKafka, job: _Job) -> None:
        """Fill one segment from job.pos (or record one gap) and commit it."""
        if job.pos >= job.target:
            job.done = True
            return
        if self.cfg.segment_min_bytes and not job.checked:
            job.checked = True
            if not self._due(cluster, raw, job):
                job.deferred = job.done = True
                return
        writer = SegmentWriter(job.topic, job.partition, job.pos, zstd_level=self.cfg.zstd_level,
                               executor=self._pool, run_id=self.run_id, backlog=self._backlog)
        pos, empty = job.pos, 0
        while pos < job.target and writer.raw_bytes < self.cfg.segment_max_bytes:
            if writer.batches and self.budget.exhausted():
                break
            if job.leftover is not None:
                chunk, job.leftover = job.leftover, None
            else:
                fetched = self._fetch(cluster, raw, job, pos)
                if isinstance(fetched, int):  # retention removed [pos, fetched)
                    if not writer.batches:
                        self._commit_gap(job, pos, fetched)
                        return
                    break  # commit what we have; the gap becomes the next link
                if fetched is None:
                    # Nothing below the snapshot came back although the range is not done. Never
                    # skip ahead on that (a hiccup must not become silent loss): stop this partition
                    # for this run; a later run gets the batches or the definitive answer below.
                    empty += 1
                    if empty >= _EMPTY_FETCHES_BEFORE_GIVING_UP:
                        log.warning("%s[%d]: no batches returned at offset %d (target %d); retrying next run",
                                    job.topic, job.partition, pos, job.target, extra=self._extra(job))
                        job.done = True
                        break
                    time.sleep(0.1 * empty)
                    continue
                empty = 0
                chunk = fetched
                if not chunk.headers:
                    pos = job.target  # the next batch is past the snapshot: [pos, target) holds none
                    break
            take = self._fit(chunk.headers, writer.raw_bytes)
            if take < len(chunk.headers):
                job.leftover = _Chunk(chunk.records, chunk.headers[take:],
                                      _still_open(chunk.aborted, chunk.records, chunk.headers[:take]))
            headers = chunk.headers[:take]
            writer.add(chunk.records, headers)
            writer.add_aborted(chunk.aborted)
            self.budget.records += sum(h.records_count for h in headers if not h.is_control)
            self.budget.bytes += sum(h.size for h in headers)
            pos = headers[-1].next_offset
            if self.progress:
                self.progress(f"{job.topic}[{job.partition}]", pos, job.target)
        self._submit(job, writer, pos)

    def _due(self, cluster: Cluster, raw: RawKafka, job: _Job) -> bool:
        """The write policy: is this partition worth its objects (a segment, a commit record and
        perhaps a hint) in this run?  Yes when about ``segment_min_bytes`` wait (estimated from the
        first fetch and the offsets left), when the oldest waiting record is ``max_lag_seconds`` old
        (the recovery-point objective), or when it is half way to the topic's ``retention.ms`` (the
        deadline that matters: a later run might find it deleted).  Gaps are always recorded."""
        fetched = self._fetch(cluster, raw, job, job.pos)
        if not isinstance(fetched, _Chunk) or not fetched.headers:
            return True  # a gap, or nothing to look at: the normal path decides
        job.leftover = fetched  # consumed by the segment, if there is one
        data = [h for h in fetched.headers if not h.is_control] or fetched.headers
        first = data[0]
        job.oldest_ms = first.max_timestamp if first.attributes & 0x08 else first.base_timestamp
        age_s = time.time() - job.oldest_ms / 1000
        size = sum(h.size for h in fetched.headers)
        end = fetched.headers[-1].next_offset
        if end < job.target:  # more waits than one fetch showed: extrapolate by offsets
            size = size * (job.target - job.pos) // max(1, end - job.pos)
        retention_ms = self._retention_ms.get(job.topic)
        due = (size >= self.cfg.segment_min_bytes
               or (self.cfg.max_lag_seconds is not None and age_s >= self.cfg.max_lag_seconds)
               or (retention_ms is not None and retention_ms > 0 and age_s * 1000 >= retention_ms / 2))
        if not due:
            job.leftover = None
            log.debug("%s[%d]: deferred by the write policy (~%d bytes, oldest %.0fs old)", job.topic,
                      job.partition, size, age_s, extra=self._extra(job))
        return due

    def _fetch(self, cluster: Cluster, raw: RawKafka, job: _Job, pos: int) -> _Chunk | int | None:
        """One fetch at ``pos``: the batches below the target, a retention gap's end, or None
        when the broker had nothing (yet) although the range is not done."""
        tp = (job.topic, job.partition)
        ahead, job.prefetch = job.prefetch, None
        ready, job.ready = job.ready, None
        if ready is not None and ready[0] == pos:
            fetched = ready[1]
        elif ahead is not None and ahead[0] == pos:
            fetched = ahead[1].result()
        else:
            fetched = self._raw_fetch(raw, tp, pos)
        log_start = fetched.log_start_offset
        if fetched.out_of_range:
            log_start = cluster.offsets([tp], "earliest")[tp]
            if log_start <= pos:
                raise KafkaClientError(f"offset {pos} out of range but the log starts at {log_start}",
                                       topic=job.topic, partition=job.partition)
        if log_start > pos:
            return log_start
        if not fetched.records:
            return None
        try:
            headers = [h for h in scan(fetched.records) if h.base_offset < job.target]
        except BatchFormatError as exc:
            raise CorruptSegmentError(f"broker returned a bad batch at offset {pos}: {exc}") from exc
        if headers and headers[-1].next_offset < job.target and self.budget.exhausted() is None:
            nxt = headers[-1].next_offset
            job.prefetch = (nxt, self._fetcher.submit(self._raw_fetch, raw, tp, nxt))
        return _Chunk(fetched.records, headers, fetched.aborted_transactions)

    def _raw_fetch(self, raw: RawKafka, tp: tuple[str, int], pos: int) -> FetchedPartition:
        _failpoints.delay("fetch")
        timeout = self.budget.timeout(self.settings.kafka.request_timeout_seconds)
        return raw.fetch({tp: pos}, max_bytes=self.cfg.fetch_max_bytes,
                         partition_max_bytes=self.cfg.partition_fetch_max_bytes,
                         max_wait_ms=int(min(500, timeout * 250)), timeout_s=timeout)[tp]

    def _fit(self, headers: list[BatchHeader], segment_bytes: int) -> int:
        """How many of ``headers`` fit the segment size and the run's record/byte budgets (at least
        one, so every call makes progress); the rest is kept for the next segment."""
        room_bytes = self.cfg.segment_max_bytes - segment_bytes
        if self.budget.max_bytes is not None:
            room_bytes = min(room_bytes, self.budget.max_bytes - self.budget.bytes)
        room_records = (self.budget.max_records - self.budget.records) if self.budget.max_records else None
        take = size = records = 0
        for h in headers:
            size += h.size
            records += 0 if h.is_control else h.records_count
            if take and (size > room_bytes or (room_records is not None and records > room_records)):
                break
            take += 1
        return take

    def _submit(self, job: _Job, writer: SegmentWriter, end: int) -> None:
        """Seal the segment here; build (wait for compression, hash), upload and commit it in the
        background (bounded), so the main thread goes on fetching and packing meanwhile.

        The in-flight bound counts the segment's batch bytes: its stored size is not known until
        compression ends, and its batches (views of the fetched buffers) are what it holds first.
        """
        if end <= job.pos:
            return
        sealed = writer.seal(end_offset=end)
        reserved = sealed.raw_bytes
        self._inflight.acquire(reserved)
        try:
            job.commit = self._committer.submit(self._commit_segment, job, sealed, end, reserved)
        except BaseException:
            self._inflight.release(reserved)
            raise

    def _commit_segment(self, job: _Job, sealed: SealedSegment, end: int, reserved: int) -> None:
        try:
            self._upload_and_commit(job, sealed.build(), end)
        finally:
            self._inflight.release(reserved)

    def _upload_and_commit(self, job: _Job, data: SegmentData, end: int) -> None:
        key = job.chain.segment_key(job.pos, end, self.run_id)
        _failpoints.delay("commit")
        _failpoints.hit("before-upload")
        if _failpoints.armed("during-upload"):
            self.store.put(key, data.payload[: data.size // 2])
            _failpoints.hit("during-upload")
        size = data.size
        # Parts may be views of fetched buffers: obstore takes any buffer.
        self.store.put(key, iter(data.parts) if size > MULTIPART_CHUNK else data.payload)
        _failpoints.hit("after-upload")
        f = data.footer
        rec = CommitRecord(
            kind="segment", topic=job.topic, partition=job.partition, start=job.pos, end=end, run_id=self.run_id,
            committed_at=now_iso(), segment=key[len(job.chain.base) + 1 :], size=size,
            sha256=data.sha256, records=f.record_count, batches=f.batch_count, raw_bytes=f.raw_bytes,
            min_timestamp=f.min_timestamp, max_timestamp=f.max_timestamp,
        )
        if job.chain.try_commit(rec):
            _failpoints.hit("after-commit")
            job.records += f.record_count
            job.batches += f.batch_count
            job.raw_bytes += f.raw_bytes
            job.stored_bytes += size
            job.segments += 1
            job.pos = job.committed = end
            log.debug("%s[%d]: committed [%d, %d)", job.topic, job.partition, rec.start, end, extra=self._extra(job))
        else:
            self._lost_race(job, key)

    def _commit_gap(self, job: _Job, start: int, end: int) -> None:
        rec = CommitRecord(kind="gap", topic=job.topic, partition=job.partition, start=start, end=end,
                           run_id=self.run_id, committed_at=now_iso(), reason="retention",
                           log_start_offset=end)
        if job.chain.try_commit(rec):
            gap = Gap(job.topic, job.partition, start, end, rec.committed_at)
            job.gaps.append(gap)
            job.pos = job.committed = end
            log.warning("%s[%d]: offsets [%d, %d) were deleted by retention before backup (%d records lost)",
                        job.topic, job.partition, start, end, gap.count, extra=self._extra(job))
        else:
            self._lost_race(job, None)

    def _lost_race(self, job: _Job, orphan: str | None) -> None:
        """Another run committed this start first: drop our copy and continue after the winner."""
        job.conflicts += 1
        job.leftover = job.prefetch = None
        if orphan is not None:
            self.store.delete(orphan)
        end = job.chain.find_end()
        if end is None or end <= job.pos:
            raise BackupIntegrityError(f"commit at {job.pos} exists but the chain does not advance",
                                       key=job.chain.commit_key(job.pos))
        log.info("%s[%d]: another run committed [%d, %d); continuing", job.topic, job.partition, job.pos, end,
                 extra=self._extra(job))
        job.pos = job.committed = end

    def _write_heads(self, jobs: list[_Job]) -> None:
        """Update the hints (concurrently).  The hint may only ever name a committed end (it must
        never lead the chain), and is skipped when it would not change what was read (an idle
        partition costs no write); a failed write is only a lost shortcut, logged as a warning."""
        due = [j for j in jobs if j.committed is not None
               and (j.committed, min(j.sweep_from, j.committed)) != j.hint]

        def write(job: _Job) -> None:
            end = job.committed
            assert end is not None
            try:
                job.chain.write_head(Head(end, min(job.sweep_from, end)))
            except StorageError as exc:
                log.warning("%s[%d]: head hint not written: %s", job.topic, job.partition, exc,
                            extra=self._extra(job))

        if len(due) <= 1:
            for job in due:
                write(job)
            return
        with ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-head") as pool:
            list(pool.map(write, due))

    def _sweep_orphans(self, job: _Job) -> None:
        """Delete uncommitted segments from crashed runs once older than the grace period.

        Young ones may belong to a run still in flight, so they are kept and the sweep resumes
        from them next time (``head.sweep_from``).  ``kafka-backup gc`` does a full sweep.
        """
        try:
            outcome = sweep_orphans(job.chain, from_start=job.sweep_from, grace_seconds=self.cfg.orphan_grace_seconds,
                                    stop=self.budget.out_of_time)
        except StorageError as exc:
            log.warning("orphan sweep skipped for %s[%d]: %s", job.topic, job.partition, exc, extra=self._extra(job))
            return
        for key in outcome.removed:
            log.info("removed orphan segment %s", key, extra=self._extra(job))
        job.sweep_from = job.pos if outcome.kept_from is None else min(job.pos, outcome.kept_from)

    # snapshots -------------------------------------------------------------------------------
    def _read_metadata(self, cluster: Cluster, topics: dict[str, TopicInfo]) -> None:
        """Topic configs (all keys; ``retention.ms`` feeds the write policy) and, on shard 0, the
        groups' committed offsets: one batched request each, before any data is read."""
        try:
            self._configs = cluster.topic_configs(topics)
            for name, entries in self._configs.items():
                value = (entries.get("retention.ms") or {}).get("value")
                if value is not None and str(value).lstrip("-").isdigit():
                    self._retention_ms[name] = int(value)
            if self.cfg.shard.index == 0:
                self._groups = cluster.group_offsets(topics)
        except KafkaClientError as exc:
            log.warning("metadata snapshot skipped: %s", exc, extra=self._extra())

    def _write_metadata(self, topics: dict[str, TopicInfo], jobs: list[_Job]) -> None:
        """Store the snapshots for restore, for the topics this run moved only: an idle topic's
        last snapshot still describes its data, and rewriting it every run would cost one PUT per
        topic per run for nothing."""
        moved = {j.topic for j in jobs if j.segments}
        if not moved or self._configs is None:
            return
        stamp = utc_stamp()
        try:
            for name in sorted(moved & set(topics)):
                info = topics[name]
                write_json(self.store, f"topics/{encode_topic(name)}/metadata/{stamp}-{self.run_id}.json", {
                    "topic": name, "partitions": info.partitions, "replication_factor": info.replication_factor,
                    "configs": self._configs.get(name, {}), "captured_at": now_iso(), "run_id": self.run_id,
                    "topic_id": info.topic_id,
                })
            if self._groups is not None:
                doc = {gid: {f"{t}:{p}": asdict(o) for (t, p), o in offs.items()}
                       for gid, offs in self._groups.items()}
                write_json(self.store, f"groups/{stamp}-{self.run_id}.json",
                           {"captured_at": now_iso(), "run_id": self.run_id, "groups": doc})
        except StorageError as exc:
            log.warning("metadata snapshot not written: %s", exc, extra=self._extra())

    def _result(self, job: _Job) -> PartitionResult:
        status: PartitionStatus = "error" if job.error else "complete" if job.pos >= job.target else \
            "deferred" if job.deferred else "partial"
        end = job.pos if job.pos >= 0 else job.before
        oldest = None
        if job.pos < job.target:
            waiting = job.leftover.headers if job.leftover is not None else []
            if (waiting and waiting[0].base_offset <= job.pos < waiting[0].next_offset) or job.deferred:
                oldest = job.oldest_ms if job.deferred else \
                    (waiting[0].max_timestamp if waiting[0].attributes & 0x08 else waiting[0].base_timestamp)
        return PartitionResult(
            topic=job.topic, partition=job.partition, status=status, start_offset=job.before,
            end_offset=end, target_offset=job.target, records=job.records, batches=job.batches,
            raw_bytes=job.raw_bytes, stored_bytes=job.stored_bytes, segments=job.segments,
            conflicts=job.conflicts, gaps=tuple(job.gaps), error=job.error,
            oldest_unbacked_ms=oldest if oldest is not None and oldest >= 0 else None,
        )


def run_backup(settings: Settings, *, deadline: Deadline | datetime | None = None, deadline_s: float | None = None,
               progress: Callable[[str, int, int], None] | None = None, raise_on_error: bool = True,
               store: Store | None = None, credential_provider: Any = None) -> RunResult:
    """Back up every selected partition up to its snapshotted end, within the budgets.

    ``deadline`` is the instant the caller must have control back by (a :class:`Deadline`, i.e. a
    monotonic instant, or an aware datetime); ``deadline_s`` the same as seconds from now; the
    earlier wins, and ``backup.max_seconds`` caps both.  The run stops starting new segments once
    less than the commit reserve (10 % of its time, at most 30 s) is left, commits what it has,
    and returns; the next run resumes.

    Per-partition failures are reported in the result (``result.ok``) rather than raised, so one
    bad partition does not cost the others their run.  A failure of the whole run (cluster or
    storage unreachable, bad settings, empty topic selection) raises a
    :class:`~kafka_backup.errors.KafkaBackupError`, or with ``raise_on_error=False`` returns a
    ``RunResult`` with ``ok=False`` and ``error``/``error_type`` set, so a handler can log and emit
    metrics first and then call :meth:`RunResult.raise_for_status`.

    ``credential_provider`` (an obstore credential provider built by a handler from its platform's
    identity library) opens the storage with that identity instead of obstore's default chain.

    Example::

        result = run_backup(Settings.from_env(), deadline=Deadline.after(remaining_s - 30),
                            raise_on_error=False)
        log.info(result.summary_line(), extra=result.summary())
        result.raise_for_status()
    """
    limit = as_deadline(deadline, deadline_s)
    started = now_iso()
    run: BackupRun | None = None
    try:
        run = BackupRun(settings, deadline=limit, progress=progress,
                        store=store or open_store(settings.storage, credential_provider=credential_provider))
        return run.run()
    except Exception as exc:
        if raise_on_error:
            raise
        log.error("backup run failed: %s", exc, extra=run._extra() if run else {})
        if run is not None:
            return run._result_of(started, "error", [], error=exc)
        return RunResult.not_started(exc, settings=settings, deadline=limit)
