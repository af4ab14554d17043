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

import contextlib
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from . import _failpoints
from ._batches import BatchFormatError, BatchHeader, scan
from ._kafka_raw import FetchedPartition, RawKafka
from .catalog import CommitRecord, Head, PartitionChain, encode_topic, now_iso, utc_stamp, write_json
from .cluster import Cluster, TopicInfo, client_kwargs
from .config import Settings
from .errors import (
    BackupIntegrityError,
    CorruptSegmentError,
    KafkaBackupError,
    KafkaClientError,
    StorageError,
)
from .segment import SegmentWriter
from .storage import MULTIPART_CHUNK, Store, open_store

log = logging.getLogger("kafka_backup.backup")

StopReason = Literal["complete", "deadline", "max_seconds", "max_records", "max_bytes"]
PartitionStatus = Literal["complete", "partial", "error"]
_EMPTY_FETCHES_BEFORE_GIVING_UP = 3
_MAX_PREFETCHED_PARTITIONS = 8
_STORE_CONCURRENCY = 16


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

    @property
    def lag(self) -> int:
        """Offsets below the run's snapshot that are still not backed up."""
        if self.target_offset is None:
            return 0
        return max(0, self.target_offset - (self.end_offset or 0))


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    started_at: str
    finished_at: str
    duration_seconds: float
    stop_reason: StopReason
    partitions: tuple[PartitionResult, ...]
    storage: str

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
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(records=self.records, raw_bytes=self.raw_bytes, stored_bytes=self.stored_bytes,
                   segments=self.segments, lag=self.lag, gap_offsets=self.gap_offsets, ok=self.ok)
        for p, pr in zip(doc["partitions"], self.partitions, strict=True):
            p["lag"] = pr.lag
        return doc


def _still_open(aborted: tuple[tuple[int, int], ...], records: bytes,
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


class _Budget:
    def __init__(self, settings: Settings, deadline_s: float | None) -> None:
        cfg = settings.backup
        self.t0 = time.monotonic()
        limits = [x for x in (cfg.max_seconds, deadline_s) if x is not None]
        self.seconds = min(limits) if limits else None
        self.limit_reason: StopReason = "max_seconds" if cfg.max_seconds is not None and (
            deadline_s is None or cfg.max_seconds <= deadline_s) else "deadline"
        # Leave time to finish the segment in hand and commit it.
        self.reserve = min(30.0, 0.1 * self.seconds) if self.seconds else 0.0
        self.max_records = cfg.max_records
        self.max_bytes = cfg.max_bytes
        self.records = 0
        self.bytes = 0

    def exhausted(self) -> StopReason | None:
        if self.max_records is not None and self.records >= self.max_records:
            return "max_records"
        if self.max_bytes is not None and self.bytes >= self.max_bytes:
            return "max_bytes"
        if self.seconds is not None and time.monotonic() - self.t0 >= self.seconds - self.reserve:
            return self.limit_reason
        return None


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
    committed: int | None = None  # the chain end known to be committed (what the hint may say)


@dataclass(frozen=True, slots=True)
class _Chunk:
    records: bytes
    headers: list[BatchHeader]
    aborted: tuple[tuple[int, int], ...]


class BackupRun:
    """Executes one run. Prefer :func:`run_backup`; this class exists for tests and the CLI."""

    def __init__(self, settings: Settings, *, deadline_s: float | None = None, store: Store | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.settings = settings
        self.cfg = settings.backup
        self.store = store or open_store(settings.storage)
        self.run_id = uuid.uuid4().hex[:16]
        self.budget = _Budget(settings, deadline_s)
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kb-zstd")
        # Fetches run one ahead of packing: the broker round trip overlaps CRC checks, compression
        # and uploads (kafka-python's IO thread does the socket work either way).
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-fetch")

    def run(self) -> RunResult:
        started = now_iso()
        stop: StopReason = "complete"
        jobs: list[_Job] = []
        try:
            with Cluster(self.settings.kafka) as cluster, RawKafka(**client_kwargs(self.settings.kafka)) as raw:
                topics = cluster.select_topics(self.cfg)
                if self.cfg.snapshot_metadata:
                    self._snapshot_metadata(cluster, topics)
                jobs = self._plan(cluster, topics)
                stop = self._loop(cluster, raw, jobs)
        finally:
            self._fetcher.shutdown(wait=True, cancel_futures=True)
            self._pool.shutdown(wait=True)
        result = RunResult(
            run_id=self.run_id, started_at=started, finished_at=now_iso(),
            duration_seconds=round(time.monotonic() - self.budget.t0, 3), stop_reason=stop,
            partitions=tuple(self._result(j) for j in jobs), storage=self.store.display,
        )
        with contextlib.suppress(StorageError):
            write_json(self.store, f"runs/{utc_stamp()}-{self.run_id}.json", result.to_dict())
        return result

    # planning --------------------------------------------------------------------------------
    def _plan(self, cluster: Cluster, topics: dict[str, TopicInfo]) -> list[_Job]:
        shard = self.cfg.shard
        tps = [(t, p) for t, info in topics.items() for p in range(info.partitions)
               if shard.count == 1 or shard_of(t, p, shard.count) == shard.index]
        targets = cluster.offsets(tps, "latest")

        def read_chain(tp: tuple[str, int]) -> tuple[Head | None, int | None, int | None] | KafkaBackupError:
            chain = PartitionChain(self.store, *tp)
            try:
                head, end = chain.read_head(), chain.find_end()
                return head, end, (chain.read_anchor() if end is None else None)
            except KafkaBackupError as exc:
                return exc

        # Object-store round trips dominate planning with many partitions: run them concurrently.
        with ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-plan") as pool:
            chains = list(pool.map(read_chain, tps))
        jobs = []
        for (t, p), found in zip(tps, chains, strict=True):
            chain = PartitionChain(self.store, t, p)
            job = _Job(t, p, chain, targets[(t, p)])
            try:
                if isinstance(found, KafkaBackupError):
                    raise found
                head, end, anchor = found
                job.before = end
                job.sweep_from = head.sweep_from if head else (end or 0)
                job.committed = end
                if end is not None:
                    job.pos = end
                elif anchor is not None:
                    job.pos = anchor
                else:
                    job.pos = chain.anchor(self._initial(cluster, t, p, job.target))
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
            jobs.append(job)
        # Most behind first, so a tight deadline serves the partitions that need it most.
        jobs.sort(key=lambda j: -(j.target - j.pos) if not j.done else 0)
        return jobs

    def _initial(self, cluster: Cluster, topic: str, partition: int, target: int) -> int:
        start = self.cfg.start
        if start == "latest":
            return target
        spec: str | int = "earliest" if start == "earliest" else int(start)
        return min(cluster.offsets([(topic, partition)], spec)[(topic, partition)], target)

    # the loop --------------------------------------------------------------------------------
    def _loop(self, cluster: Cluster, raw: RawKafka, jobs: list[_Job]) -> StopReason:
        with ThreadPoolExecutor(max_workers=_STORE_CONCURRENCY, thread_name_prefix="kb-sweep") as pool:
            list(pool.map(self._sweep_orphans, [j for j in jobs if not j.done]))
        while True:
            active = [j for j in jobs if not j.done]
            if not active:
                return "complete"
            keep_prefetch = len(active) <= _MAX_PREFETCHED_PARTITIONS  # each holds one fetch response
            for job in active:
                reason = self.budget.exhausted()
                if reason is not None:
                    for j in active:
                        self._write_head(j)
                    return reason
                try:
                    self._one_segment(cluster, raw, job)
                except KafkaBackupError as exc:
                    log.error("%s[%d]: %s", job.topic, job.partition, exc)
                    job.error, job.done = str(exc), True
                if job.done or not keep_prefetch:
                    job.prefetch = None
                if job.done:
                    self._write_head(job)

    def _one_segment(self, cluster: Cluster, raw: RawKafka, job: _Job) -> None:
        """Fill one segment from job.pos (or record one gap) and commit it."""
        if job.pos >= job.target:
            job.done = True
            return
        writer = SegmentWriter(job.topic, job.partition, job.pos, zstd_level=self.cfg.zstd_level,
                               executor=self._pool, run_id=self.run_id)
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
                                    job.topic, job.partition, pos, job.target)
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
        self._commit_segment(job, writer, pos)

    def _fetch(self, cluster: Cluster, raw: RawKafka, job: _Job, pos: int) -> _Chunk | int | None:
        """One fetch at ``pos``: the batches below the target, a retention gap's end, or None
        when the broker had nothing (yet) although the range is not done."""
        tp = (job.topic, job.partition)
        ahead, job.prefetch = job.prefetch, None
        fetched = ahead[1].result() if ahead is not None and ahead[0] == pos else self._raw_fetch(raw, tp, pos)
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
        return raw.fetch({tp: pos}, max_bytes=self.cfg.fetch_max_bytes,
                         partition_max_bytes=self.cfg.partition_fetch_max_bytes)[tp]

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

    def _commit_segment(self, job: _Job, writer: SegmentWriter, end: int) -> None:
        if end <= job.pos:
            return
        data = writer.finish(end_offset=end)
        key = job.chain.segment_key(job.pos, end, self.run_id)
        _failpoints.hit("before-upload")
        if _failpoints.armed("during-upload"):
            self.store.put(key, data.payload[: data.size // 2])
            _failpoints.hit("during-upload")
        size = data.size
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
            log.debug("%s[%d]: committed [%d, %d)", job.topic, job.partition, rec.start, end)
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
                        job.topic, job.partition, start, end, gap.count)
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
        log.info("%s[%d]: another run committed [%d, %d); continuing", job.topic, job.partition, job.pos, end)
        job.pos = job.committed = end

    def _write_head(self, job: _Job) -> None:
        """The hint may only ever name a committed end (it must never lead the chain)."""
        end = job.committed
        if end is None or (job.before == end and job.sweep_from == end):
            return
        with contextlib.suppress(StorageError):
            job.chain.write_head(Head(end, min(job.sweep_from, end)))

    def _sweep_orphans(self, job: _Job) -> None:
        """Delete uncommitted segments from crashed runs once older than the grace period.

        Young ones may belong to a run still in flight, so they are kept and the sweep resumes
        from them next time (``head.sweep_from``).  ``kafka-backup gc`` does a full sweep.
        """
        grace = self.cfg.orphan_grace_seconds
        now = time.time()
        next_from = job.pos
        try:
            for key, start, _end, mtime in job.chain.uncommitted_segments(job.sweep_from):
                if now - mtime.timestamp() >= grace:
                    self.store.delete(key)
                    log.info("removed orphan segment %s", key)
                else:
                    next_from = min(next_from, start)
        except StorageError as exc:
            log.warning("orphan sweep skipped for %s[%d]: %s", job.topic, job.partition, exc)
            return
        job.sweep_from = next_from

    # snapshots -------------------------------------------------------------------------------
    def _snapshot_metadata(self, cluster: Cluster, topics: dict[str, TopicInfo]) -> None:
        """Topic configs (all keys) for each topic, and group offsets (shard 0 only), for restore."""
        stamp = utc_stamp()
        try:
            configs = cluster.topic_configs(topics)
            for name, info in topics.items():
                write_json(self.store, f"topics/{encode_topic(name)}/metadata/{stamp}-{self.run_id}.json", {
                    "topic": name, "partitions": info.partitions, "replication_factor": info.replication_factor,
                    "configs": configs.get(name, {}), "captured_at": now_iso(), "run_id": self.run_id,
                })
            if self.cfg.shard.index == 0:
                groups = cluster.group_offsets(topics)
                doc = {gid: {f"{t}:{p}": asdict(o) for (t, p), o in offs.items()} for gid, offs in groups.items()}
                write_json(self.store, f"groups/{stamp}-{self.run_id}.json",
                           {"captured_at": now_iso(), "run_id": self.run_id, "groups": doc})
        except KafkaClientError as exc:
            log.warning("metadata snapshot skipped: %s", exc)

    def _result(self, job: _Job) -> PartitionResult:
        status: PartitionStatus = "error" if job.error else ("complete" if job.pos >= job.target else "partial")
        end = job.pos if job.pos >= 0 else job.before
        return PartitionResult(
            topic=job.topic, partition=job.partition, status=status, start_offset=job.before,
            end_offset=end, target_offset=job.target, records=job.records, batches=job.batches,
            raw_bytes=job.raw_bytes, stored_bytes=job.stored_bytes, segments=job.segments,
            conflicts=job.conflicts, gaps=tuple(job.gaps), error=job.error,
        )


def run_backup(settings: Settings, *, deadline_s: float | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> RunResult:
    """Back up every selected partition up to its snapshotted end, within the budgets.

    ``deadline_s`` is the time the caller can give this call (e.g. Lambda's remaining time minus a
    margin); the run stops early enough to commit what it has.  Per-partition failures are
    reported in the result (``result.ok``) rather than raised, so one bad partition does not cost
    the others their run.  Raises :class:`~kafka_backup.errors.KafkaBackupError` only when nothing
    can run (cluster unreachable, storage unusable, bad topic list).
    """
    return BackupRun(settings, deadline_s=deadline_s, progress=progress).run()
