"""What a backup holds (``ls``) and whether it is intact (``verify``), read from storage alone.

Both walk each partition's commit chain from its first record; ``verify`` also downloads every
committed segment and checks the commit record's SHA-256, the segment's own content hash, every
block CRC and every batch CRC, and that the segment covers exactly the committed range.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .catalog import CommitRecord, PartitionChain, list_partitions, list_topics, read_topic_id
from .errors import KafkaBackupError
from .segment import SegmentReader
from .storage import Store


@dataclass(frozen=True, slots=True)
class GapInfo:
    start: int
    end: int
    count: int
    detected_at: str


@dataclass
class PartitionSummary:
    topic: str
    partition: int
    topic_id: str | None = None  # the topic id this backup belongs to (None: not recorded)
    start_offset: int | None = None
    end_offset: int | None = None
    records: int = 0
    segments: int = 0
    stored_bytes: int = 0
    raw_bytes: int = 0
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    gaps: list[GapInfo] = field(default_factory=list)

    @property
    def gap_offsets(self) -> int:
        return sum(g.count for g in self.gaps)


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str


@dataclass
class VerifyReport:
    partitions: list[PartitionSummary]
    problems: list[Problem]
    segments_checked: int = 0
    bytes_checked: int = 0
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def gap_offsets(self) -> int:
        return sum(p.gap_offsets for p in self.partitions)


def _partitions(store: Store, topics: Iterable[str] | None) -> list[tuple[str, int, str | None]]:
    names = list(topics) if topics else list_topics(store)
    out: list[tuple[str, int, str | None]] = []
    for t in names:
        try:
            topic_id = read_topic_id(store, t)
        except KafkaBackupError:
            topic_id = None  # verify reports the damaged object through the chain walk below
        out.extend((t, p, topic_id) for p in list_partitions(store, t))
    return out


def summarize(store: Store, topics: Iterable[str] | None = None) -> list[PartitionSummary]:
    """Per partition: committed range, records, stored bytes, time range and gaps."""
    out = []
    for topic, partition, topic_id in _partitions(store, topics):
        s = PartitionSummary(topic, partition, topic_id)
        for rec in PartitionChain(store, topic, partition).walk():
            _account(s, rec)
        out.append(s)
    return out


def _account(s: PartitionSummary, rec: CommitRecord) -> None:
    s.start_offset = rec.start if s.start_offset is None else s.start_offset
    s.end_offset = rec.end
    if rec.kind == "gap":
        s.gaps.append(GapInfo(rec.start, rec.end, rec.gap_count, rec.committed_at))
        return
    s.records += rec.records
    s.segments += 1
    s.stored_bytes += rec.size
    s.raw_bytes += rec.raw_bytes
    if rec.min_timestamp is not None:
        s.min_timestamp = rec.min_timestamp if s.min_timestamp is None else min(s.min_timestamp, rec.min_timestamp)
    if rec.max_timestamp is not None:
        s.max_timestamp = rec.max_timestamp if s.max_timestamp is None else max(s.max_timestamp, rec.max_timestamp)


def verify(store: Store, topics: Iterable[str] | None = None) -> VerifyReport:
    """Check every checksum and the chain's continuity; collect problems instead of stopping.

    A location that holds no backup at all is a problem too: a typo in a prefix must fail a
    nightly check, not pass it with "0 segments".
    """
    report = VerifyReport([], [])
    found = _partitions(store, topics)
    if not found:
        what = f" for topic(s) {', '.join(topics)}" if topics else ""
        report.problems.append(Problem(store.display, f"no backup found at {store.display}{what}"))
        return report
    for topic, partition, topic_id in found:
        chain = PartitionChain(store, topic, partition)
        s = PartitionSummary(topic, partition, topic_id)
        report.partitions.append(s)
        try:
            starts = chain.commit_starts()
            walked: dict[int, str | None] = {}  # start -> committed segment key
            for rec in chain.walk():
                walked[rec.start] = f"{chain.base}/{rec.segment}" if rec.segment else None
                _account(s, rec)
                if rec.kind != "segment" or rec.segment is None:
                    continue
                key = f"{chain.base}/{rec.segment}"
                try:
                    report.bytes_checked += _check_segment(store, key, rec)
                    report.segments_checked += 1
                except KafkaBackupError as exc:
                    report.problems.append(Problem(key, str(exc)))
            for start in starts:
                if start not in walked:
                    report.problems.append(Problem(chain.commit_key(start),
                                                   "commit record is not reachable from the chain's first record "
                                                   "(hole or overlap in the chain)"))
            report.orphans.extend(k for k, *_ in chain.uncommitted_segments(0, known=walked))
        except KafkaBackupError as exc:
            report.problems.append(Problem(chain.base, str(exc)))
    return report


def _check_segment(store: Store, key: str, rec: CommitRecord) -> int:
    """Download one committed segment and check it end to end; returns its size."""
    payload = store.get(key)
    reader = SegmentReader.from_bytes(payload, key=key, expected_sha256=rec.sha256)
    reader.verify()
    f = reader.footer
    if (f.topic, f.partition, f.start_offset, f.end_offset) != (rec.topic, rec.partition, rec.start, rec.end):
        raise KafkaBackupError(f"{key}: segment covers {f.topic}[{f.partition}] [{f.start_offset}, "
                               f"{f.end_offset}), its commit record says [{rec.start}, {rec.end})")
    if f.record_count != rec.records:
        raise KafkaBackupError(f"{key}: {f.record_count} records, its commit record says {rec.records}")
    return len(payload)


def format_ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
