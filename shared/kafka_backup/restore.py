"""Restore a backed-up topic into a cluster: partition-preserving, point-in-time, resumable.

What is restored: every committed data record in the chosen range with its key, value (tombstones
stay tombstones), headers (order, duplicates, bytes, null values) and timestamp, in offset order,
each source partition into one target partition.  Records of aborted transactions and control
markers are never produced.  Original offsets cannot be reproduced by Kafka; the source→target
offset map is what ``--groups`` uses to move consumer groups to the same logical record.

How: the stored record batches go back as they are, in ProduceRequests built by
:mod:`kafka_backup._produce` inside the restore's own Kafka transaction (only the writer fields and
the CRC change); a batch is decoded and rebuilt only when a range bound cuts it, the log cleaner
left holes in it, or it is LogAppendTime (see :meth:`RestoreRun._units`).  Up to
``parallel_partitions`` partitions go at once, one batch of each per request, within a shared
budget of loaded segment bytes (:data:`SEGMENT_MEMORY_BUDGET`).

Resumability (the exact guarantee, also in ``docs/operations.md``): records are produced in
Kafka transactions of at least ``checkpoint_records`` records (transactional id derived from the
restore's arguments; a transaction ends at a batch boundary), and after each commit a progress
record per source partition under ``restores/<target-topic>/<restore-id>/<source-partition>.json``
stores the next source offset and the target's end.  A re-run with the same arguments first sends
InitProducerId for that id, which fences the interrupted run's producer and aborts its open
transaction, so nothing uncommitted can still land; then it reads back, with read_committed, what
the target holds past the checkpoint (only a transaction committed just before the crash, before
its checkpoint was written), skips exactly those source records and continues: no loss, no
duplicate, even on multi-replica clusters and with requests still in flight at the crash.  A
rejected batch aborts the open transaction, so the target always stays a clean prefix; a
retriable failure takes the re-run path within the run.  The one assumption: nothing else writes
to the target partitions during the restore (every batch must land at the offset expected, and a
target that ends below the checkpoint is refused).  Offsets in the target are contiguous within a
transaction; each commit marker takes one offset.

Example::

    result = run_restore(settings, RestoreOptions(topic="orders", to_topic="orders-copy", groups=True))
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from . import _failpoints
from ._batches import ATTR_TIMESTAMP_TYPE, BatchHeader
from ._produce import CONNECTION_MAX_IN_FLIGHT, Outgoing, RecordTuple, RetriableProduceError, TransactionalProducer
from .catalog import PartitionChain, encode_topic, latest_json, list_partitions, now_iso
from .cluster import Cluster, client_kwargs, committed_offsets
from .config import Settings
from .errors import CorruptSegmentError, KafkaBackupError, ObjectNotFound, RestoreError
from .segment import Record, SegmentReader
from .storage import Store, open_store

log = logging.getLogger("kafka_backup.restore")

#: Topic configs that describe the source cluster rather than the data; never copied.
_SKIP_CONFIGS = {"message.format.version", "leader.replication.throttled.replicas",
                 "follower.replication.throttled.replicas"}


CHECKPOINT_RECORDS = 50_000
PARALLEL_PARTITIONS = 4


@dataclass
class _Txn:
    """The transaction being filled: which source records go to which target offsets."""

    first_source: int | None
    first_target: int
    records: int = 0
    last_source: int | None = None
    next_target: int = field(init=False)

    def __post_init__(self) -> None:
        self.next_target = self.first_target


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore. Offsets are source offsets; ``to_*`` bounds are exclusive.

    Time bounds select like Kafka's ``offsets_for_times``: the range starts at the first record
    whose timestamp is >= ``from_time`` and ends before the first record whose timestamp is
    >= ``to_time``.
    """

    topic: str
    to_topic: str | None = None
    partition_map: dict[int, int] | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    from_time: int | None = None
    to_time: int | None = None
    dry_run: bool = False
    groups: bool = False
    create_topic: bool = True
    #: Records per transaction and progress checkpoint (what a crash can cost in re-work); a
    #: transaction ends at the first batch boundary past it.
    checkpoint_records: int = CHECKPOINT_RECORDS
    #: Partitions restored at once, one batch of each per request; each holds one segment in memory.
    parallel_partitions: int = PARALLEL_PARTITIONS

    @property
    def target_topic(self) -> str:
        return self.to_topic or self.topic


@dataclass
class PartitionRestore:
    source_partition: int
    target_partition: int
    records: int = 0  # produced by this run (or that would be, in a dry run)
    resumed_skip: int = 0  # records found already written after the last checkpoint
    first_source_offset: int | None = None
    last_source_offset: int | None = None
    target_start: int | None = None
    target_end: int | None = None
    already_done: bool = False


@dataclass
class GroupRestore:
    group: str
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> target offset
    source_offsets: dict[str, int] = field(default_factory=dict)
    committed: bool = False
    error: str | None = None


@dataclass
class RestoreResult:
    topic: str
    target_topic: str
    dry_run: bool
    created_topic: bool
    partitions: list[PartitionRestore]
    groups: list[GroupRestore]
    duration_seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def ok(self) -> bool:
        return all(g.error is None for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"records": self.records, "ok": self.ok}

    def summary_lines(self) -> list[str]:
        verb = "would restore" if self.dry_run else "restored"
        lines = []
        if self.created_topic:
            lines.append(f"{'would create' if self.dry_run else 'created'} topic {self.target_topic}")
        for p in self.partitions:
            note = " (already complete)" if p.already_done else (
                f" (resumed; {p.resumed_skip} found already written)" if p.resumed_skip else "")
            lines.append(f"{self.topic}[{p.source_partition}] -> {self.target_topic}[{p.target_partition}]  "
                         f"{verb} {p.records} records  source offsets {p.first_source_offset}..{p.last_source_offset}"
                         f"  target offsets {p.target_start}..{p.target_end}{note}")
        for g in self.groups:
            state = "error: " + g.error if g.error else ("committed" if g.committed else "planned")
            lines.append(f"group {g.group}: {state} {g.offsets}")
        lines.append(f"total: {verb} {self.records} records in {self.duration_seconds:.1f}s")
        return lines


def _restore_id(settings: Settings, opts: RestoreOptions, pmap: dict[int, int]) -> str:
    """Same arguments, same id: a re-run finds the progress of the interrupted one."""
    doc = json.dumps([opts.topic, opts.target_topic, sorted(settings.kafka.bootstrap_servers), sorted(pmap.items()),
                      opts.from_offset, opts.to_offset, opts.from_time, opts.to_time], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


class _Stamped(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


class _Range:
    """Point-in-time selection, applied record by record in offset order."""

    def __init__(self, opts: RestoreOptions) -> None:
        self.opts = opts
        self.started = opts.from_time is None
        self.finished = False

    def accept(self, rec: _Stamped) -> bool:
        o = self.opts
        if o.to_offset is not None and rec.offset >= o.to_offset:
            self.finished = True
        if o.to_time is not None and rec.timestamp >= o.to_time:
            self.finished = True
        if self.finished:
            return False
        if o.from_offset is not None and rec.offset < o.from_offset:
            return False
        if not self.started and o.from_time is not None and rec.timestamp >= o.from_time:
            self.started = True
        return self.started

    def takes_whole(self, h: BatchHeader) -> bool:
        """True when every record of ``h`` is selected without looking at them: the range has
        started, the batch lies inside the offset bounds and before ``to_time``."""
        o = self.opts
        return (self.started and (o.from_offset is None or h.base_offset >= o.from_offset)
                and (o.to_offset is None or h.next_offset <= o.to_offset)
                and (o.to_time is None or h.max_timestamp < o.to_time))


#: Segment bytes restore holds in memory at once, over all partitions restored in parallel (one
#: segment more when a single one is larger).
SEGMENT_MEMORY_BUDGET = 192 << 20
_END: Any = object()


class _SegmentBudget:
    """Bytes of loaded segment objects; shared by the partitions one restore serves in turn (one
    thread), so a wide topic with large segments stays within :data:`SEGMENT_MEMORY_BUDGET`.

    First come, first served: a partition that had to wait gets the next bytes released before
    the partition that released them may load again, so no partition is left for a slow tail.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: list[int] = []

    def take(self, size: int, who: int) -> bool:
        if (self._waiting and self._waiting[0] != who) or (self.used and self.used + size > self.limit):
            if who not in self._waiting:
                self._waiting.append(who)
            return False
        if self._waiting and self._waiting[0] == who:
            self._waiting.pop(0)
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


#: Attribute bits that make a stored batch unfit to send as it is: LogAppendTime (its records'
#: times are the batch's max timestamp, which CreateTime would not reproduce) and the delete-horizon
#: flag the log cleaner sets (not a producer's to set).
_REBUILD_ATTRIBUTES = ATTR_TIMESTAMP_TYPE | 0x40


@dataclass(slots=True)
class _Unit:
    """What one produced batch carries: a stored batch sent as it is, or selected records of one
    stored batch, re-encoded (``rebuilt``)."""

    offsets: Sequence[int]  # source offsets of its records, ascending
    batch: memoryview | None
    rebuilt: list[RecordTuple] | None
    codec: int

    @property
    def count(self) -> int:
        return len(self.offsets)

    def target_of(self, source_offset: int, first_target: int) -> int:
        """Target offset of the first record at or after ``source_offset`` (which is <= the last)."""
        return first_target + bisect.bisect_left(self.offsets, source_offset)

    def drop_first(self, n: int) -> _Unit:
        """The unit without its first ``n`` records (a resumed run skipping what is committed)."""
        from kafka.record.default_records import DefaultRecordBatch

        records = self.rebuilt
        if records is None:
            assert self.batch is not None
            records = [(r.timestamp, r.key, r.value, tuple(r.headers)) for r in DefaultRecordBatch(bytes(self.batch))]
        return _Unit(self.offsets[n:], None, records[n:], self.codec)


class RestoreRun:
    def __init__(self, settings: Settings, opts: RestoreOptions, *, store: Store | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.settings = settings
        self.opts = opts
        self.store = store or open_store(settings.storage)
        self.progress = progress

    # reading ---------------------------------------------------------------------------------
    def _segments(self, partition: int, start: int | None, rng: _Range, *,
                  budget: _SegmentBudget | None = None) -> Iterator[SegmentReader | None]:
        """The committed segments of one partition that may hold records from ``start`` on.

        With a ``budget``, a segment is loaded only when the memory it takes fits; until then this
        yields None (the caller serves other partitions, which release theirs).  The caller must
        drop its reference to a reader before asking for the next one.
        """
        chain = PartitionChain(self.store, self.opts.topic, partition)
        for rec in chain.walk():
            if rec.kind != "segment" or rec.segment is None or rec.records == 0:
                continue
            if start is not None and rec.end <= start:
                continue
            if self.opts.to_offset is not None and rec.start >= self.opts.to_offset:
                return
            # A segment with no record at/after from_time cannot start the range; once the range
            # has started, every record counts whatever its timestamp (timestamps need not be monotonic).
            if not rng.started and self.opts.from_time is not None and rec.max_timestamp is not None \
                    and rec.max_timestamp < self.opts.from_time:
                continue
            key = f"{chain.base}/{rec.segment}"
            while budget is not None and not budget.take(rec.size, partition):
                yield None
            try:
                yield SegmentReader.from_bytes(self.store.get_buffer(key), key=key, expected_sha256=rec.sha256)
            finally:
                if budget is not None:
                    budget.release(rec.size)

    def _records(self, partition: int, start: int | None, rng: _Range) -> Iterator[Record]:
        """Committed records of one partition in offset order, from ``start`` on."""
        for reader in self._segments(partition, start, rng):
            assert reader is not None  # (no budget)
            yield from reader.records(from_offset=start)

    def _units(self, partition: int, start: int | None, rng: _Range,
               budget: _SegmentBudget | None = None) -> Iterator[_Unit | None]:
        """What to produce for one partition, in offset order, from ``start`` on.

        A stored batch goes as it is when all its records are selected, it is CreateTime without
        the cleaner's flag, and its offsets are consecutive (the broker refuses gaps inside a
        batch).  Otherwise it is decoded and its selected records are re-encoded: a batch
        straddling a range bound, one the log cleaner compacted, a LogAppendTime batch.  Control
        batches and aborted transactions are dropped whole (``SegmentReader.data_batches``).
        """
        from kafka.errors import CorruptRecordError
        from kafka.record.default_records import DefaultRecordBatch

        segments = self._segments(partition, start, rng, budget=budget)
        while (reader := next(segments, _END)) is not _END:
            if reader is None:  # waiting for segment memory
                yield None
                continue
            f = reader.footer
            lo = f.start_offset if start is None else max(start, f.start_offset)
            # The object's SHA-256 was checked against its commit record: per-batch CRCs are redundant
            # (and each sent batch gets a new one).
            for h, raw in reader.data_batches(from_offset=start, check_crc=False, prefetch=True):
                if (rng.takes_whole(h) and h.base_offset >= lo and h.next_offset <= f.end_offset
                        and not h.attributes & _REBUILD_ATTRIBUTES and h.records_count == h.last_offset_delta + 1):
                    yield _Unit(range(h.base_offset, h.next_offset), raw, None, h.compression)
                    continue
                offsets: list[int] = []
                records: list[RecordTuple] = []
                try:
                    for r in DefaultRecordBatch(bytes(raw)):
                        if r.offset < lo or r.offset >= f.end_offset:
                            continue
                        if not rng.accept(r):
                            if rng.finished:
                                break
                            continue
                        offsets.append(r.offset)
                        records.append((r.timestamp, r.key, r.value, tuple(r.headers)))
                except (CorruptRecordError, ValueError) as exc:
                    raise CorruptSegmentError(f"batch at offset {h.base_offset}: {exc}", key=reader.key) from exc
                if records:
                    yield _Unit(offsets, None, records, h.compression)
                if rng.finished:
                    return
            # Drop every view of this segment before the next one loads: one per partition in memory.
            del reader, f
            h = raw = None

    # planning --------------------------------------------------------------------------------
    def _partition_map(self) -> dict[int, int]:
        backed = list_partitions(self.store, self.opts.topic)
        if not backed:
            raise RestoreError(f"no backup of topic {self.opts.topic!r} in {self.store.display}")
        if self.opts.partition_map is None:
            return {p: p for p in backed}
        pmap = dict(self.opts.partition_map)
        missing = sorted(set(pmap) - set(backed))
        if missing:
            raise RestoreError(f"--partition-map names partitions {missing} that have no backup "
                               f"(backed up: {backed})")
        dsts = list(pmap.values())
        if len(set(dsts)) != len(dsts):
            raise RestoreError("--partition-map sends two source partitions to one target partition; "
                               "order and resumability need one source per target")
        return pmap

    def _ensure_topic(self, cluster: Cluster, pmap: dict[int, int]) -> bool:
        """Create the target topic from the backed-up metadata if missing; check its size."""
        needed = max(pmap.values()) + 1
        existing = cluster.topics([self.opts.target_topic]).get(self.opts.target_topic)
        if existing is not None:
            if existing.partitions < needed:
                raise RestoreError(f"target topic {self.opts.target_topic!r} has {existing.partitions} partitions "
                                   f"but the restore needs {needed}; nothing was written")
            return False
        if not self.opts.create_topic:
            raise RestoreError(f"target topic {self.opts.target_topic!r} does not exist (and --no-create-topic)")
        meta = latest_json(self.store, f"topics/{encode_topic(self.opts.topic)}/metadata/")
        partitions, rf, configs = needed, 1, {}
        if meta is not None:
            doc = meta[1]
            partitions = max(needed, int(doc.get("partitions", needed)))
            rf = int(doc.get("replication_factor", 1))
            configs = {k: v["value"] for k, v in doc.get("configs", {}).items()
                       if v.get("source") in {"DYNAMIC_TOPIC_CONFIG", "TOPIC_CONFIG"} and not v.get("sensitive")
                       and not v.get("read_only") and v.get("value") is not None and k not in _SKIP_CONFIGS}
        rf = max(1, min(rf, cluster.broker_count()))
        if not self.opts.dry_run:
            cluster.create_topic(self.opts.target_topic, partitions, rf, configs)
        log.info("%s topic %s: %d partitions, replication factor %d, configs %s",
                 "would create" if self.opts.dry_run else "created", self.opts.target_topic, partitions, rf, configs)
        return True

    def _group_snapshot(self) -> dict[str, dict[int, int]]:
        """{group: {source partition: committed offset}} from the newest groups snapshot."""
        meta = latest_json(self.store, "groups/")
        out: dict[str, dict[int, int]] = {}
        if meta is None:
            return out
        for gid, offsets in meta[1].get("groups", {}).items():
            for tp, off in offsets.items():
                topic, _, part = tp.rpartition(":")
                if topic == self.opts.topic:
                    out.setdefault(gid, {})[int(part)] = int(off["offset"])
        return out

    # the run ---------------------------------------------------------------------------------
    def run(self) -> RestoreResult:
        t0 = time.monotonic()
        pmap = self._partition_map()
        groups_src = self._group_snapshot() if self.opts.groups else {}
        wanted: dict[int, set[int]] = {}
        for offs in groups_src.values():
            for p, o in offs.items():
                wanted.setdefault(p, set()).add(o)
        rid = _restore_id(self.settings, self.opts, pmap)
        with Cluster(self.settings.kafka) as cluster:
            created = self._ensure_topic(cluster, pmap)
            with contextlib.ExitStack() as stack:
                # The producer starts first: its init() fences a killed run's producer and aborts its
                # open transaction, so the end offsets read next are final.
                producer = None if self.opts.dry_run else self._producer(stack, rid)
                ends = {} if (self.opts.dry_run and created) else cluster.offsets(
                    [(self.opts.target_topic, d) for d in pmap.values()], "latest")
                parts, translations = self._restore_all(
                    cluster, pmap, rid, {d: o for (_, d), o in ends.items()}, producer, wanted)
            group_results = self._groups(cluster, groups_src, pmap, translations) if self.opts.groups else []
        return RestoreResult(self.opts.topic, self.opts.target_topic, self.opts.dry_run, created, parts,
                             group_results, round(time.monotonic() - t0, 3))

    def _producer(self, stack: contextlib.ExitStack, rid: str) -> TransactionalProducer:
        from ._kafka_raw import RawKafka

        cfg = self.settings.kafka
        raw = stack.enter_context(RawKafka(**client_kwargs(cfg),
                                           max_in_flight_requests_per_connection=CONNECTION_MAX_IN_FLIGHT))
        producer = TransactionalProducer(raw, f"kafka-backup-restore-{rid}",
                                         request_timeout_s=cfg.request_timeout_seconds)
        producer.init()
        return producer

    def _progress_key(self, rid: str, src: int) -> str:
        return f"restores/{encode_topic(self.opts.target_topic)}/{rid}/{src}.json"

    def _restore_all(self, cluster: Cluster, pmap: dict[int, int], rid: str, ends: dict[int, int],
                     producer: TransactionalProducer | None,
                     wanted: dict[int, set[int]]) -> tuple[list[PartitionRestore], dict[int, dict[int, int]]]:
        """Restore every partition of ``pmap``; returns the results and, per source partition,
        {source offset: target offset} for the group offsets in ``wanted``.

        Up to ``parallel_partitions`` partitions go at once, one batch of each per ProduceRequest,
        in one transaction.  A failure a new attempt may cure (leader moved, connection lost,
        coordinator moving) starts over from the last checkpoints with a new producer epoch,
        exactly as a re-run would, until no transaction has committed for four request timeouts.
        """
        results = {src: PartitionRestore(src, dst) for src, dst in sorted(pmap.items())}
        translations: dict[int, dict[int, int]] = {}
        failing_since: float | None = None
        topic = self.opts.target_topic
        while True:
            committed_before = sum(pr.records for pr in results.values())
            try:
                todo = [pr for pr in results.values() if pr.source_partition not in translations]
                self._run_lanes(todo, rid, ends, producer, wanted, translations)
                return list(results.values()), translations
            except RetriableProduceError as exc:
                assert producer is not None
                now = time.monotonic()
                if failing_since is None or sum(pr.records for pr in results.values()) > committed_before:
                    failing_since = now
                budget = 4 * self.settings.kafka.request_timeout_seconds
                if now - failing_since > budget:
                    raise RestoreError(f"{topic}: still failing after {budget:.0f}s: {exc}") from exc
                log.warning("%s: %s; resuming from the last checkpoint with a new producer epoch", topic, exc)
                time.sleep(random.uniform(0.2, 1.0))
                producer.init()  # fences what is still in flight and aborts the open transaction
                left = [pmap[src] for src in pmap if src not in translations]
                found = cluster.offsets([(topic, d) for d in left], "latest")
                ends = {d: found[(topic, d)] for d in left}

    def _run_lanes(self, todo: list[PartitionRestore], rid: str, ends: dict[int, int],
                   producer: TransactionalProducer | None, wanted: dict[int, set[int]],
                   translations: dict[int, dict[int, int]]) -> None:
        """One attempt over the partitions in ``todo`` (finished ones land in ``translations``)."""
        budget = _SegmentBudget(SEGMENT_MEMORY_BUDGET)  # per attempt: a failed one's readers release into theirs
        queue = list(todo)
        lanes: list[_Lane] = []
        closing: list[_Lane] = []  # exhausted: checkpointed as done at the next commit
        in_txn = 0  # records in the open transaction, all lanes
        try:
            while queue or lanes or closing:
                while queue and len(lanes) < self.opts.parallel_partitions:
                    pr = queue.pop(0)
                    lane = _Lane(self, pr, rid, ends.get(pr.target_partition, 0),
                                 wanted.get(pr.source_partition, set()), budget)
                    if lane.finished:
                        translations[pr.source_partition] = lane.translations
                    else:
                        lanes.append(lane)
                parts = [out for lane in lanes if (out := lane.next()) is not None]
                if parts and producer is not None:
                    if not producer.in_transaction:
                        producer.begin()
                    producer.send_many(parts)
                in_txn += sum(p.records for p in parts)
                del parts  # views of the segments: the next round may load new ones
                closing += [lane for lane in lanes if lane.exhausted]
                lanes = [lane for lane in lanes if not lane.exhausted]
                if in_txn >= self.opts.checkpoint_records or not (queue or lanes):
                    if producer is not None and in_txn:
                        producer.commit()
                        _failpoints.hit("restore-after-commit")
                    for lane in lanes + closing:
                        lane.checkpoint(committed=producer is not None and lane.txn.records > 0)
                    in_txn = 0
                    for lane in closing:
                        translations[lane.pr.source_partition] = lane.translations
                    closing = []
        except RetriableProduceError:
            raise  # the next attempt's new epoch aborts the open transaction
        except BaseException:
            if producer is not None and producer.in_transaction:
                # Nothing of the open transaction becomes visible: the target stays a clean prefix
                # at the last checkpoint, and a re-run resumes from there.
                with contextlib.suppress(Exception):
                    producer.abort()
            raise

    def _translate_restored(self, src: int, state: dict[str, Any], offsets: list[int]) -> dict[int, int]:
        """Target offsets for source ``offsets`` that earlier runs already restored, from the
        progress record's transactions (each maps a run of source records onto consecutive target
        offsets) and a walk over the source without producing."""
        txns = sorted((int(a), int(b)) for a, b in state.get("transactions", []))
        out: dict[int, int] = {}
        todo = list(offsets)
        if txns:
            rng = _Range(self.opts)
            rng.started = True
            bounds = [t[0] for t in txns[1:]] + [state["next_source_offset"] or 0]
            for (first_src, first_tgt), limit in zip(txns, bounds, strict=True):
                n = first_tgt
                if not todo or todo[0] >= limit:
                    continue
                for rec in self._records(src, first_src, rng):
                    if rec.offset >= limit or not todo:
                        break
                    if not rng.accept(rec):
                        continue
                    while todo and todo[0] <= rec.offset:
                        out[todo.pop(0)] = n
                    n += 1
        for o in todo:  # before the first or after the last restored record
            out[o] = state["target_base"] if txns and o < txns[0][0] else state["target_end"]
        return out

    def _groups(self, cluster: Cluster, groups_src: dict[str, dict[int, int]], pmap: dict[int, int],
                translations: dict[int, dict[int, int]]) -> list[GroupRestore]:
        out = []
        for gid, offs in sorted(groups_src.items()):
            g = GroupRestore(gid)
            for src, off in offs.items():
                if src not in pmap or off not in translations.get(src, {}):
                    continue
                g.source_offsets[f"{self.opts.topic}:{src}"] = off
                g.offsets[f"{self.opts.target_topic}:{pmap[src]}"] = translations[src][off]
            out.append(g)
            if self.opts.dry_run or not g.offsets:
                continue
            try:
                state, members = cluster.group_members(gid)
                if members:
                    raise RestoreError(f"group {gid} has {members} active members (state {state}); "
                                       "stop its consumers first")
                cluster.commit_group_offsets(gid, {(t, int(p)): o for tp, o in g.offsets.items()
                                                   for t, _, p in [tp.rpartition(":")]})
                g.committed = True
            except KafkaBackupError as exc:
                g.error = str(exc)
        return out


class _Lane:
    """One source partition being restored: its checkpoint, what an interrupted run already
    committed past it, the group offsets to translate, and its share of the open transaction."""

    def __init__(self, run: RestoreRun, pr: PartitionRestore, rid: str, target_end: int, wanted: set[int],
                 budget: _SegmentBudget) -> None:
        self.run = run
        self.pr = pr
        self.finished = self.exhausted = False
        opts = run.opts
        src, dst = pr.source_partition, pr.target_partition
        self.dry_run = opts.dry_run
        self.key = run._progress_key(rid, src)
        state: dict[str, Any] | None = None
        if not opts.dry_run:
            with contextlib.suppress(ObjectNotFound):
                state = json.loads(run.store.get(self.key))
        if state is None:
            state = {"source_partition": src, "target_partition": dst, "target_topic": opts.target_topic,
                     "target_base": target_end, "target_end": target_end, "next_source_offset": None,
                     "restored": 0, "transactions": [], "translations": {}, "done": False,
                     "started_at": now_iso()}
            if not opts.dry_run:
                run.store.put(self.key, json.dumps(state).encode())
        self.state = state
        self.translations = {int(k): int(v) for k, v in state["translations"].items()}
        pr.target_start = state["target_base"]
        if target_end < state["target_end"]:  # checked for finished partitions too
            raise RestoreError(f"target {opts.target_topic}[{dst}] ends at {target_end}, below the "
                               f"restore checkpoint {state['target_end']}: it was truncated or recreated")
        # Records an interrupted run committed after its last checkpoint (it died between the
        # transaction's commit and the progress write): read back, exactly, and skipped below.
        self.already = [] if opts.dry_run or state["done"] else committed_offsets(
            run.settings.kafka, opts.target_topic, dst, state["target_end"], target_end)
        resume_at = state["next_source_offset"]
        behind = sorted(o for o in wanted if o not in self.translations
                        and (state["done"] or (resume_at is not None and o < resume_at)))
        if behind:  # e.g. --groups added on a re-run, or a newer group snapshot: not in the progress
            self.translations.update(run._translate_restored(src, state, behind))
        if state["done"]:
            pr.already_done, pr.target_end, self.finished = True, state["target_end"], True
            return
        pr.resumed_skip += len(self.already)
        rng = _Range(opts)
        rng.started = rng.started or resume_at is not None  # resumed inside the range
        self.units = run._units(src, resume_at, rng, budget)
        self.pending_wanted = sorted(o for o in wanted if o not in self.translations)
        self.txn = _Txn(first_source=None, first_target=target_end)
        self.skipped = 0
        self.label = f"{opts.topic}[{src}]"

    def next(self) -> Outgoing | None:
        """The next batch to send (its records counted into the open transaction), or None when
        the partition has nothing more (``exhausted``)."""
        pr, txn, translations = self.pr, self.txn, self.translations
        for unit in self.units:
            if unit is None:  # waiting for segment memory held by other partitions
                return None
            if pr.first_source_offset is None:
                pr.first_source_offset = unit.offsets[0]
            pr.last_source_offset = unit.offsets[-1]
            if self.skipped < len(self.already):  # committed by the interrupted run
                take = min(unit.count, len(self.already) - self.skipped)
                while self.pending_wanted and self.pending_wanted[0] <= unit.offsets[take - 1]:
                    o = self.pending_wanted.pop(0)
                    translations[o] = self.already[self.skipped + bisect.bisect_left(unit.offsets, o)]
                if self.skipped == 0:
                    self.state["transactions"].append([unit.offsets[0], self.already[0]])
                self.skipped += take
                self.state["next_source_offset"] = unit.offsets[take - 1] + 1
                if take == unit.count:
                    continue
                unit = unit.drop_first(take)
            while self.pending_wanted and self.pending_wanted[0] <= unit.offsets[-1]:
                o = self.pending_wanted.pop(0)
                translations[o] = unit.target_of(o, txn.next_target)
            out = Outgoing(self.run.opts.target_topic, pr.target_partition, unit.count, txn.next_target,
                           batch=unit.batch, rebuilt=unit.rebuilt, codec=unit.codec)
            if txn.first_source is None:
                txn.first_source = unit.offsets[0]
            txn.next_target += unit.count
            txn.records += unit.count
            txn.last_source = unit.offsets[-1]
            if self.run.progress:
                self.run.progress(self.label, unit.offsets[-1], -1)
            return out
        self.exhausted = True
        return None

    def checkpoint(self, *, committed: bool) -> None:
        """After the open transaction ended (committed, or nothing produced in a dry run): record
        the progress, then start this lane's share of the next one."""
        txn, state, pr = self.txn, self.state, self.pr
        if self.exhausted:  # the group was at (or past) the end of what was restored
            for o in self.pending_wanted:
                self.translations[o] = txn.next_target + (1 if committed else 0)
            self.pending_wanted = []
        end = txn.next_target
        if committed:
            end += 1  # the commit marker takes one offset
            state["transactions"].append([txn.first_source, txn.next_target - txn.records])
        pr.records += txn.records
        self.txn = _Txn(first_source=None, first_target=end)
        if self.exhausted:
            pr.target_end = end if committed else txn.next_target
        if self.dry_run or not (txn.records or self.exhausted or self.skipped):
            return
        state["done"] = self.exhausted
        if txn.last_source is not None:
            state["next_source_offset"] = txn.last_source + 1
        state["target_end"] = end
        state["restored"] = state.get("restored", 0) + txn.records
        state["translations"] = {str(k): v for k, v in self.translations.items()}
        state["updated_at"] = now_iso()
        self.run.store.put(self.key, json.dumps(state).encode())


def run_restore(settings: Settings, opts: RestoreOptions,
                progress: Callable[[str, int, int], None] | None = None) -> RestoreResult:
    """Restore ``opts.topic`` from ``settings.storage`` into ``settings.kafka`` (see module doc)."""
    return RestoreRun(settings, opts, progress=progress).run()
