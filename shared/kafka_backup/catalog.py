"""Object layout and the per-partition committed chain (the source of truth of a backup).

Layout under the store's prefix (``docs/format.md`` is the spec)::

    topics/<topic>/<partition>/segments/<start:020d>-<end:020d>-<run_id>.kbseg   immutable data
    topics/<topic>/<partition>/commits/<start:020d>.json                         create-only
    topics/<topic>/<partition>/head.json                                         hint (overwritten)
    topics/<topic>/<partition>/anchor.json                                       create-only
    topics/<topic>/topic.json                                                    create-only identity
    topics/<topic>/metadata/<utc>-<run_id>.json                                  config snapshots
    groups/<utc>-<run_id>.json                                                   group offsets
    runs/<utc>-<run_id>.json                                                     run summaries

``<topic>`` is percent-encoded (anything outside ``[A-Za-z0-9._~-]``, and a leading dot) so any
name maps to a safe, reversible key segment.

The anchor records, once and create-only, the offset where a partition's chain begins (resolved
from ``start: earliest | latest | <time>`` by the first run that sees the partition), so that an
empty first run or a lost hint can never move the start.

``topic.json`` records, once and create-only, the topic id (KIP-516) the backup belongs to: a
topic deleted and recreated under the same name has a new id, and a run that meets one refuses to
continue the old chain instead of silently mixing two topics' offsets.

The chain: commit records for [start, end) keyed by ``start``; the next record's key is the
previous one's ``end``.  A segment becomes part of the backup only when its commit record is
created with a create-only write, so two runs can never both commit the same range, and a crash
before the commit leaves an orphan segment that no reader ever looks at.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

from .errors import BackupIntegrityError, CorruptSegmentError, ObjectExists, ObjectNotFound
from .storage import Store

FORMAT_VERSION = 1
OFFSET_WIDTH = 20
_SEGMENT_RE = re.compile(r"(\d{20})-(\d{20})-([A-Za-z0-9]+)\.kbseg$")

CommitKind = Literal["segment", "gap"]


def encode_topic(topic: str) -> str:
    """Reversible, key-safe encoding of a topic name."""
    enc = quote(topic, safe="-_.")
    return "%2E" + enc[1:] if enc.startswith(".") else enc


def decode_topic(segment: str) -> str:
    return unquote(segment)


def offset_key(offset: int) -> str:
    return f"{offset:0{OFFSET_WIDTH}d}"


def utc_stamp(ts: datetime | None = None) -> str:
    return (ts or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """One link of the chain: a committed segment, or an explicit retention gap."""

    kind: CommitKind
    topic: str
    partition: int
    start: int
    end: int
    run_id: str
    committed_at: str
    segment: str | None = None  # key relative to the partition folder
    size: int = 0
    sha256: str | None = None
    records: int = 0
    batches: int = 0
    raw_bytes: int = 0
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    # gap only
    reason: str | None = None
    log_start_offset: int | None = None
    format_version: int = FORMAT_VERSION

    @property
    def gap_count(self) -> int:
        return self.end - self.start if self.kind == "gap" else 0

    def to_json(self) -> bytes:
        doc = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> CommitRecord:
        try:
            doc = json.loads(raw)
            if doc.get("format_version") != FORMAT_VERSION:
                raise CorruptSegmentError(f"unsupported commit format {doc.get('format_version')}", key=key)
            rec = cls(**doc)
        except (ValueError, TypeError) as exc:
            raise CorruptSegmentError(f"malformed commit record: {exc}", key=key) from exc
        if rec.kind not in ("segment", "gap") or rec.end <= rec.start or (rec.kind == "segment" and not rec.segment):
            raise CorruptSegmentError("inconsistent commit record", key=key)
        return rec


@dataclass(frozen=True, slots=True)
class Head:
    """The fast-path hint: a committed end seen by some run (never ahead of the chain)."""

    end: int
    sweep_from: int
    updated_at: str = field(default_factory=now_iso)


class PartitionChain:
    """The commit chain of one partition in one store."""

    def __init__(self, store: Store, topic: str, partition: int) -> None:
        self.store = store
        self.topic = topic
        self.partition = partition
        self.base = f"topics/{encode_topic(topic)}/{partition}"

    # keys ------------------------------------------------------------------------------------
    def commit_key(self, start: int) -> str:
        return f"{self.base}/commits/{offset_key(start)}.json"

    def segment_key(self, start: int, end: int, run_id: str) -> str:
        return f"{self.base}/segments/{offset_key(start)}-{offset_key(end)}-{run_id}.kbseg"

    @property
    def head_key(self) -> str:
        return f"{self.base}/head.json"

    @property
    def anchor_key(self) -> str:
        return f"{self.base}/anchor.json"

    def anchor(self, proposed: int, *, topic_id: str | None = None) -> int:
        """The chain's agreed start: ours if we create the anchor first, else the existing one."""
        doc: dict[str, Any] = {"start": proposed, "created_at": now_iso()}
        if topic_id:
            doc["topic_id"] = topic_id
        try:
            self.store.put_if_absent(self.anchor_key, json.dumps(doc).encode())
            return proposed
        except ObjectExists:
            pass
        try:
            return int(json.loads(self.store.get(self.anchor_key))["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSegmentError(f"malformed anchor: {exc}", key=self.anchor_key) from exc

    def read_anchor(self) -> int | None:
        try:
            return int(json.loads(self.store.get(self.anchor_key))["start"])
        except ObjectNotFound:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSegmentError(f"malformed anchor: {exc}", key=self.anchor_key) from exc

    # reading ---------------------------------------------------------------------------------
    def read_commit(self, start: int) -> CommitRecord | None:
        key = self.commit_key(start)
        try:
            raw = self.store.get(key)
        except ObjectNotFound:
            return None
        rec = CommitRecord.from_json(raw, key=key)
        if rec.start != start or rec.topic != self.topic or rec.partition != self.partition:
            raise BackupIntegrityError(f"commit record names [{rec.start}, {rec.end}) of {rec.topic}[{rec.partition}]",
                                       key=key)
        return rec

    def read_head(self) -> Head | None:
        try:
            doc = json.loads(self.store.get(self.head_key))
            return Head(int(doc["end"]), int(doc.get("sweep_from", doc["end"])), str(doc.get("updated_at", "")))
        except ObjectNotFound:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a damaged hint is only a lost shortcut: fall back to listing

    def write_head(self, head: Head) -> None:
        self.store.put(self.head_key, json.dumps(asdict(head)).encode())

    def commit_starts(self) -> list[int]:
        """Every commit key's start offset, sorted (one listing)."""
        starts = []
        for info in self.store.list(f"{self.base}/commits"):
            name = info.key.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit() and len(name) == OFFSET_WIDTH + 5:
                starts.append(int(name[:-5]))
        return sorted(starts)

    def first_start(self) -> int | None:
        starts = self.commit_starts()
        return starts[0] if starts else None

    def find_end(self) -> int | None:
        """The chain's end offset, or None when nothing is committed yet.

        Reads the hint, then probes ``commits/<end>`` forward until one is missing; without a hint,
        one listing finds the last key.  The hint can lag the truth but never lead it.
        """
        return self.find_end_from(self.read_head())

    def find_end_from(self, head: Head | None) -> int | None:
        """:meth:`find_end` with the hint already read (one GET fewer per partition)."""
        if head is not None:
            pos = head.end
        else:
            starts = self.commit_starts()
            if not starts:
                return None
            pos = starts[-1]
        while True:
            rec = self.read_commit(pos)
            if rec is None:
                break
            pos = rec.end
        return pos

    def walk(self, start: int | None = None) -> Iterator[CommitRecord]:
        """Follow the chain from its first record (or ``start``) to its end."""
        pos = self.first_start() if start is None else start
        while pos is not None:
            rec = self.read_commit(pos)
            if rec is None:
                return
            yield rec
            pos = rec.end

    # writing ---------------------------------------------------------------------------------
    def try_commit(self, rec: CommitRecord) -> bool:
        """Create the commit record; False if another run committed this start first.

        "Already exists" is checked against the stored bytes: a create whose response was lost
        (a connection reset after the store wrote it) is retried by the storage client and then
        meets its own record.  Taking that for a lost race would delete the segment it commits.
        """
        key = self.commit_key(rec.start)
        data = rec.to_json()
        try:
            self.store.put_if_absent(key, data)
        except ObjectExists:
            try:
                return self.store.get(key) == data
            except ObjectNotFound:
                return False
        return True

    def uncommitted_segments(self, from_start: int, *, known: dict[int, str | None] | None = None,
                             ) -> Iterator[tuple[str, int, int, datetime]]:
        """Segments with start >= ``from_start`` that no commit record names: (key, start, end, mtime).

        ``known`` maps starts already read (e.g. by a chain walk) to their committed segment key,
        saving a commit-record read per segment.
        """
        names: dict[int, str | None] = dict(known or {})
        after = f"{self.base}/segments/{offset_key(from_start - 1)}" if from_start > 0 else None
        for info in self.store.list(f"{self.base}/segments", start_after=after):
            m = _SEGMENT_RE.search(info.key)
            if not m or int(m.group(1)) < from_start:
                continue
            start, end = int(m.group(1)), int(m.group(2))
            if start not in names:
                rec = self.read_commit(start)
                names[start] = f"{self.base}/{rec.segment}" if rec and rec.segment else None
            if names[start] != info.key:
                yield info.key, start, end, info.last_modified


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """What one orphan sweep of a partition did."""

    removed: tuple[str, ...]
    #: the lowest start of an orphan kept because it was younger than the grace period (a later
    #: sweep must look again from there), or None when none was kept
    kept_from: int | None


def sweep_orphans(chain: PartitionChain, *, from_start: int, grace_seconds: float, dry_run: bool = False,
                  now: float | None = None, stop: Callable[[], bool] | None = None) -> SweepOutcome:
    """Delete segments that no commit record names, once older than ``grace_seconds``.

    Used by every backup run (from the partition's ``sweep_from``) and by ``kafka-backup gc``
    (from 0).  Young orphans may belong to a run still in flight, so they are kept; ``grace``
    must exceed the longest run.  ``stop`` is polled between deletions (a run's deadline).
    """
    now = time.time() if now is None else now
    removed: list[str] = []
    kept: int | None = None
    for key, start, _end, mtime in chain.uncommitted_segments(from_start):
        if stop is not None and stop():
            kept = start if kept is None else min(kept, start)
            break
        if now - mtime.timestamp() >= grace_seconds:
            if not dry_run:
                chain.store.delete(key)
            removed.append(key)
        else:
            kept = start if kept is None else min(kept, start)
    return SweepOutcome(tuple(removed), kept)


def topic_identity_key(topic: str) -> str:
    return f"topics/{encode_topic(topic)}/topic.json"


def read_topic_id(store: Store, topic: str) -> str | None:
    """The topic id this backup location belongs to (None: not recorded, e.g. an older backup)."""
    key = topic_identity_key(topic)
    try:
        doc = json.loads(store.get(key))
    except ObjectNotFound:
        return None
    except ValueError as exc:
        raise CorruptSegmentError(f"malformed topic identity: {exc}", key=key) from exc
    value = doc.get("topic_id") if isinstance(doc, dict) else None
    return str(value) if value else None


def claim_topic_id(store: Store, topic: str, topic_id: str) -> str:
    """Record ``topic_id`` as this backup's topic, create-only; return the id that is recorded.

    The caller compares: a different id means the topic was deleted and recreated.
    """
    recorded = read_topic_id(store, topic)  # a GET first: a create attempt every run would be a PUT every run
    if recorded is not None:
        return recorded
    key = topic_identity_key(topic)
    doc = {"topic": topic, "topic_id": topic_id, "created_at": now_iso(), "format_version": FORMAT_VERSION}
    try:
        store.put_if_absent(key, json.dumps(doc, sort_keys=True).encode())
        return topic_id
    except ObjectExists:
        recorded = read_topic_id(store, topic)
        if recorded is None:
            raise CorruptSegmentError("topic identity has no topic_id", key=key) from None
        return recorded


def list_topics(store: Store) -> list[str]:
    dirs, _ = store.list_dirs("topics")
    return sorted(decode_topic(d) for d in dirs)


def list_partitions(store: Store, topic: str) -> list[int]:
    dirs, _ = store.list_dirs(f"topics/{encode_topic(topic)}")
    return sorted(int(d) for d in dirs if d.isdigit())


def write_json(store: Store, key: str, doc: Any) -> None:
    store.put(key, json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode())


def latest_json(store: Store, prefix: str) -> tuple[str, Any] | None:
    """The newest JSON object under ``prefix`` (keys start with a UTC stamp, so key order is time)."""
    keys = sorted(i.key for i in store.list(prefix) if i.key.endswith(".json"))
    if not keys:
        return None
    return keys[-1], json.loads(store.get(keys[-1]))
