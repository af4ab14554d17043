"""Segment format v1: the broker's record batches, verbatim, in an immutable checksummed object.

Full specification: ``docs/format.md``.  In short::

    "KBSEG\\x00\\x01\\n"                    8-byte magic (format v1)
    block 0 .. block N-1                   batches; uncompressed ones zstd-framed per block,
                                           producer-compressed ones stored as they are
    footer                                 UTF-8 JSON: header fields, block index, aborted txns,
                                           SHA-256 of every byte before the footer
    u64 footer_length | u32 crc32c(footer) | "KBSEGEND"      20-byte trailer

Why batches verbatim: offsets, timestamps and their type, null vs empty keys/values, header order
and duplicates, producer ids and transaction markers survive by construction, and backup never
pays for decoding records.  Why a footer: the writer streams blocks and learns counts last; a
reader finds the index with one small range read from the end.

Example::

    w = SegmentWriter("orders", 0, start_offset=0)
    w.add(batch_bytes)                        # whole v2 batches, CRC-checked here
    data = w.finish(end_offset=w.next_offset)
    for rec in SegmentReader.from_bytes(data.payload, key="...").records():
        ...
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import crc32c as _crc32c
import zstandard

from ._batches import BatchFormatError, BatchHeader, scan
from .errors import CorruptSegmentError

FORMAT_VERSION = 1
MAGIC = b"KBSEG\x00\x01\n"
END_MAGIC = b"KBSEGEND"
TRAILER = struct.Struct(">QI8s")
DEFAULT_BLOCK_RAW_BYTES = 1 << 20
CODEC_ZSTD = "zstd"
CODEC_NONE = "none"
MAX_FOOTER_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Block:
    """One index entry: where a run of whole batches sits and what it covers."""

    position: int
    stored_size: int
    raw_size: int
    codec: str
    first_offset: int
    next_offset: int
    max_timestamp: int
    batches: int
    records: int
    crc32c: int

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "stored_size": self.stored_size, "raw_size": self.raw_size,
                "codec": self.codec, "first_offset": self.first_offset, "next_offset": self.next_offset,
                "max_timestamp": self.max_timestamp, "batches": self.batches, "records": self.records,
                "crc32c": self.crc32c}


@dataclass(frozen=True, slots=True)
class SegmentFooter:
    """The segment's header fields and index (stored as the JSON footer)."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int
    min_timestamp: int | None
    max_timestamp: int | None
    record_count: int
    batch_count: int
    raw_bytes: int
    aborted_transactions: tuple[tuple[int, int], ...]
    blocks: tuple[Block, ...]
    content_sha256: str
    run_id: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version, "topic": self.topic, "partition": self.partition,
            "start_offset": self.start_offset, "end_offset": self.end_offset,
            "min_timestamp": self.min_timestamp, "max_timestamp": self.max_timestamp,
            "record_count": self.record_count, "batch_count": self.batch_count, "raw_bytes": self.raw_bytes,
            "aborted_transactions": [list(a) for a in self.aborted_transactions],
            "blocks": [b.to_json() for b in self.blocks], "content_sha256": self.content_sha256,
            "run_id": self.run_id,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> SegmentFooter:
        try:
            doc = json.loads(raw)
            if doc["format_version"] != FORMAT_VERSION:
                raise CorruptSegmentError(f"unsupported segment format version {doc['format_version']}", key=key)
            return cls(
                topic=doc["topic"], partition=int(doc["partition"]), start_offset=int(doc["start_offset"]),
                end_offset=int(doc["end_offset"]), min_timestamp=doc["min_timestamp"],
                max_timestamp=doc["max_timestamp"], record_count=int(doc["record_count"]),
                batch_count=int(doc["batch_count"]), raw_bytes=int(doc["raw_bytes"]),
                aborted_transactions=tuple((int(p), int(o)) for p, o in doc["aborted_transactions"]),
                blocks=tuple(Block(**b) for b in doc["blocks"]), content_sha256=str(doc["content_sha256"]),
                run_id=str(doc.get("run_id", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSegmentError(f"malformed segment footer: {exc}", key=key) from exc


@dataclass(frozen=True, slots=True)
class SegmentData:
    """A finished segment, ready to upload: its parts in order (not joined, so uploading never
    needs a second copy of the segment in memory)."""

    parts: tuple[bytes | bytearray | memoryview, ...]
    footer: SegmentFooter
    sha256: str  # of the whole object, recorded in the commit record

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def payload(self) -> bytes:
        return b"".join(self.parts)


@dataclass(slots=True)
class _Pending:
    #: runs of whole batches: read-only views into the buffers given to ``add`` (no copy)
    pieces: list[memoryview] = field(default_factory=list)
    size: int = 0
    codec: str = CODEC_ZSTD
    first_offset: int = -1
    next_offset: int = -1
    max_timestamp: int = -1
    batches: int = 0
    records: int = 0


def _records_from(batch: bytes, start: int) -> int:
    """Records at or after ``start`` in one batch (decodes it: only for a range's first batch)."""
    from kafka.record.default_records import DefaultRecordBatch

    return sum(1 for r in DefaultRecordBatch(batch) if r.offset >= start)


_compressors = threading.local()


def _compress(level: int, pieces: tuple[memoryview, ...]) -> bytes:
    """One zstd frame (with the content size) of the block's batches.

    A compressor per thread and level: creating one costs about a tenth of compressing 1 MiB, and
    a reused one gives the same bytes.  A block's batches usually lie in one fetched buffer, so
    they are compressed where they are; only a block spanning two fetches is joined first.
    """
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_compressors, "by_level", None)
    if cache is None:
        cache = _compressors.by_level = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return compressor.compress(pieces[0] if len(pieces) == 1 else b"".join(pieces))


class SegmentWriter:
    """Accumulates whole batches for one partition range and produces the segment bytes.

    Blocks of uncompressed batches are zstd-compressed (on ``executor`` when given, so compression
    overlaps fetching: zstandard releases the GIL).  Batches are not copied on the way in: blocks
    hold read-only views of the buffers given to :meth:`add` (a mutable buffer is copied once, so
    a caller may reuse it), producer-compressed blocks are stored from those views, and zstd reads
    them in place.  Memory held is about one segment: the views keep the fetched buffers alive
    until the block is compressed, or until :meth:`finish` for producer-compressed blocks.
    """

    def __init__(self, topic: str, partition: int, start_offset: int, *, zstd_level: int = 3,
                 block_raw_bytes: int = DEFAULT_BLOCK_RAW_BYTES, executor: Executor | None = None,
                 run_id: str = "", backlog: threading.Semaphore | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.start_offset = start_offset
        self.next_offset = start_offset
        self.run_id = run_id
        self._level = zstd_level
        self._block_raw_bytes = block_raw_bytes
        self._executor = executor
        # One slot per block waiting for ``executor``: packing runs far ahead of zstd, and every
        # queued block keeps its fetched buffers alive, so the queue (shared by all writers of a
        # run) must be bounded for memory to be.
        self._backlog = backlog
        self._pending = _Pending()
        # Sealed blocks: their index fields and stored bytes, or the compression still running.
        self._blocks: list[tuple[tuple[int, str, int, int, int, int, int],
                                 Future[bytes] | bytes | tuple[memoryview, ...]]] = []
        self._aborted: dict[tuple[int, int], None] = {}
        self.records = 0
        self.batches = 0
        self.raw_bytes = 0
        self._min_ts: int | None = None
        self._max_ts: int | None = None

    def add(self, buf: bytes | bytearray | memoryview, headers: Iterable[BatchHeader] | None = None) -> None:
        """Append whole batches (already in offset order, each starting at or after ``next_offset``
        except possibly the very first one). ``headers`` may come from an earlier :func:`scan`."""
        mv = memoryview(buf)
        if not mv.readonly:  # the writer keeps views until finish(): never of bytes that may change
            mv = memoryview(bytes(mv))
        run = -1  # start in mv of the batches taken for the pending block but not yet in its pieces
        end = -1
        for h in headers if headers is not None else scan(mv):
            p = self._pending
            if h.next_offset <= self.next_offset and self.batches:
                if run >= 0:  # keep what was taken before the bad batch consistent with the counts
                    p.pieces.append(mv[run:end])
                raise ValueError(f"batch at offset {h.base_offset} is not after {self.next_offset}")
            codec = CODEC_ZSTD if h.compression == 0 else CODEC_NONE
            if p.batches and (p.codec != codec or p.size >= self._block_raw_bytes):
                if run >= 0:
                    p.pieces.append(mv[run:end])
                    run = -1
                self._seal()
                p = self._pending
            if not p.batches:
                p.codec, p.first_offset = codec, h.base_offset
            if run < 0 or h.position != end:
                if run >= 0:
                    p.pieces.append(mv[run:end])
                run = h.position
            end = h.position + h.size
            p.size += h.size
            p.next_offset = h.next_offset
            ts_max = h.max_timestamp
            # With the delete-horizon bit (set by the log cleaner) base_timestamp is no record's time.
            ts_min = h.max_timestamp if h.log_append_time or h.attributes & 0x40 else h.base_timestamp
            p.max_timestamp = max(p.max_timestamp, ts_max)
            p.batches += 1
            if not h.is_control:
                n = h.records_count
                if h.base_offset < self.start_offset:  # a batch straddling the range start
                    n = _records_from(bytes(mv[h.position : h.position + h.size]), self.start_offset)
                p.records += n
                self.records += n
                if ts_min >= 0:
                    self._min_ts = ts_min if self._min_ts is None else min(self._min_ts, ts_min)
                if ts_max >= 0:
                    self._max_ts = ts_max if self._max_ts is None else max(self._max_ts, ts_max)
            self.batches += 1
            self.raw_bytes += h.size
            self.next_offset = h.next_offset
        if run >= 0:
            self._pending.pieces.append(mv[run:end])

    def add_aborted(self, aborted: Iterable[tuple[int, int]]) -> None:
        """Record the broker's aborted transactions (producer_id, first_offset) seen for this range."""
        for pid, first in aborted:
            self._aborted[(int(pid), int(first))] = None

    def _seal(self) -> None:
        p = self._pending
        if not p.batches:
            return
        pieces = tuple(p.pieces)
        stored: Future[bytes] | bytes | tuple[memoryview, ...]
        if p.codec == CODEC_NONE:
            stored = pieces
        elif self._executor is not None:
            backlog = self._backlog
            if backlog is not None:
                backlog.acquire()
            try:
                stored = self._executor.submit(_compress, self._level, pieces)
            except BaseException:
                if backlog is not None:
                    backlog.release()
                raise
            if backlog is not None:
                stored.add_done_callback(lambda _: backlog.release())
        else:
            stored = _compress(self._level, pieces)
        meta = (p.size, p.codec, p.first_offset, p.next_offset, p.max_timestamp, p.batches, p.records)
        self._blocks.append((meta, stored))
        self._pending = _Pending()

    def finish(self, end_offset: int | None = None) -> SegmentData:
        """Seal the last block and build the object. ``end_offset`` (exclusive) may exceed the last
        batch's next offset when the range ends in offsets with no batch (compacted away)."""
        return self.seal(end_offset).build()

    def seal(self, end_offset: int | None = None) -> SealedSegment:
        """Seal the last block and close the writer; :meth:`SealedSegment.build` (which waits for
        compression and hashes every byte) may then run on another thread."""
        self._seal()
        end = self.next_offset if end_offset is None else end_offset
        if end < self.next_offset:
            raise ValueError(f"end_offset {end} is before the last batch's next offset {self.next_offset}")
        blocks, self._blocks = self._blocks, []
        return SealedSegment(self, end, blocks, tuple(sorted(self._aborted, key=lambda a: (a[1], a[0]))))


@dataclass(frozen=True, slots=True)
class SealedSegment:
    writer: SegmentWriter
    end_offset: int
    blocks: list[tuple[tuple[int, str, int, int, int, int, int], Future[bytes] | bytes | tuple[memoryview, ...]]]
    aborted: tuple[tuple[int, int], ...]

    @property
    def raw_bytes(self) -> int:
        return self.writer.raw_bytes

    def build(self) -> SegmentData:
        w = self.writer
        parts: list[bytes | bytearray | memoryview] = [MAGIC]
        content = hashlib.sha256(MAGIC)
        position = len(MAGIC)
        blocks: list[Block] = []
        for (raw_size, codec, first, nxt, max_ts, batches, records), stored in self.blocks:
            data = stored.result() if isinstance(stored, Future) else stored
            pieces = data if isinstance(data, tuple) else (data,)
            crc = 0
            size = 0
            for piece in pieces:
                crc = _crc32c.crc32c(piece, crc)
                content.update(piece)
                size += len(piece)
            blocks.append(Block(position, size, raw_size, codec, first, nxt, max_ts, batches, records, crc))
            parts.extend(pieces)
            position += size
        footer = SegmentFooter(
            topic=w.topic, partition=w.partition, start_offset=w.start_offset, end_offset=self.end_offset,
            min_timestamp=w._min_ts, max_timestamp=w._max_ts, record_count=w.records,
            batch_count=w.batches, raw_bytes=w.raw_bytes, aborted_transactions=self.aborted,
            blocks=tuple(blocks), content_sha256=content.hexdigest(), run_id=w.run_id,
        )
        fj = footer.to_json()
        tail = fj + TRAILER.pack(len(fj), _crc32c.crc32c(fj), END_MAGIC)
        whole = content.copy()  # the object hash continues the content hash: one pass over the data
        whole.update(tail)
        parts.append(tail)
        return SegmentData(tuple(parts), footer, whole.hexdigest())


# ------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record, as the broker stored it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int  # 0 CreateTime, 1 LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    producer_id: int
    is_transactional: bool


def read_footer(tail: bytes | memoryview, *, key: str, object_size: int) -> tuple[SegmentFooter, int]:
    """Parse the footer from the object's last bytes; returns (footer, footer_start)."""
    if object_size < len(MAGIC) + TRAILER.size:
        raise CorruptSegmentError(f"truncated segment: {object_size} bytes is too short", key=key)
    flen, fcrc, end = TRAILER.unpack(tail[-TRAILER.size :])
    if end != END_MAGIC:
        raise CorruptSegmentError("truncated or not a segment: end marker missing", key=key)
    start = object_size - TRAILER.size - flen
    if flen > MAX_FOOTER_BYTES or start < len(MAGIC):
        raise CorruptSegmentError(f"footer length {flen} does not fit the object", key=key)
    fj = tail[len(tail) - TRAILER.size - flen : len(tail) - TRAILER.size]
    if len(fj) != flen:
        raise CorruptSegmentError("footer not fully read", key=key)
    if _crc32c.crc32c(fj) != fcrc:
        raise CorruptSegmentError("footer checksum mismatch", key=key)
    return SegmentFooter.from_json(bytes(fj), key=key), start


class SegmentReader:
    """Reads and checks one segment object held in memory.

    Every read is checked: the trailer and footer CRC on open, the SHA-256 over all content in
    :meth:`verify` (and before any record is returned), each block's CRC-32C and each batch's
    CRC-32C as it is decoded.  Corruption raises :class:`CorruptSegmentError` naming ``key``;
    wrong records are never returned.
    """

    def __init__(self, payload: bytes | memoryview, footer: SegmentFooter, footer_start: int, *,
                 key: str) -> None:
        # A view: block slices of it are not copies (a store's buffer is read in place).
        self.payload = memoryview(payload)
        self.footer = footer
        self.key = key
        self._footer_start = footer_start
        self._verified = False

    @classmethod
    def from_bytes(cls, payload: bytes | memoryview, *, key: str,
                   expected_sha256: str | None = None) -> SegmentReader:
        """``payload`` may be any bytes-like object (e.g. :meth:`Store.get_buffer`'s view)."""
        payload = memoryview(payload)
        if expected_sha256 is not None and hashlib.sha256(payload).hexdigest() != expected_sha256:
            raise CorruptSegmentError("object SHA-256 differs from its commit record", key=key)
        if payload[: len(MAGIC)] != MAGIC:
            raise CorruptSegmentError("not a kafka-backup segment (bad magic)", key=key)
        footer, start = read_footer(payload, key=key, object_size=len(payload))
        reader = cls(payload, footer, start, key=key)
        # The commit record's SHA-256 covers every byte of the object, so the content hash in the
        # footer (written from the same bytes) need not be computed a second time.
        reader._verified = expected_sha256 is not None
        return reader

    def verify(self) -> None:
        """Check the content SHA-256, every block CRC and every batch CRC (no record decoding)."""
        self.verify_content()
        for _ in self.batches():
            pass

    def _block_bytes(self, block: Block) -> bytes | memoryview:
        end = block.position + block.stored_size
        if end > self._footer_start or block.position < len(MAGIC):
            raise CorruptSegmentError(f"block at {block.position} lies outside the content", key=self.key)
        data = self.payload[block.position : end]
        if _crc32c.crc32c(data) != block.crc32c:
            raise CorruptSegmentError(f"block at byte {block.position} fails its CRC-32C", key=self.key)
        if block.codec == CODEC_NONE:
            return data
        if block.codec != CODEC_ZSTD:
            raise CorruptSegmentError(f"unknown block codec {block.codec!r}", key=self.key)
        try:
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=block.raw_size)
        except zstandard.ZstdError as exc:
            raise CorruptSegmentError(f"block at byte {block.position}: {exc}", key=self.key) from exc
        if len(raw) != block.raw_size:
            raise CorruptSegmentError(f"block at byte {block.position} has the wrong size", key=self.key)
        return raw

    def batches(self, *, from_offset: int | None = None, from_timestamp: int | None = None,
                check_crc: bool = True, prefetch: bool = False) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Yield (header, raw batch bytes), skipping blocks wholly before the bounds.

        Each block's CRC-32C is always checked.  ``check_crc=False`` skips the per-batch CRC-32C:
        for callers that checked the object's SHA-256 against its commit record, which covers
        every byte (restore re-computes each batch's CRC anyway).  ``prefetch`` decompresses the
        next block on a helper thread while the caller works on this one (zstd releases the GIL).
        """
        if not self._verified:
            self.verify_content()
        blocks = [b for b in self.footer.blocks
                  if not (from_offset is not None and b.next_offset <= from_offset)
                  and not (from_timestamp is not None and b.max_timestamp < from_timestamp)]
        if not blocks:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-read") if prefetch else None
        try:
            ahead: Future[bytes | memoryview] | None = pool.submit(self._block_bytes, blocks[0]) if pool else None
            for i, block in enumerate(blocks):
                if pool is not None and ahead is not None:
                    data = ahead.result()
                    ahead = pool.submit(self._block_bytes, blocks[i + 1]) if i + 1 < len(blocks) else None
                else:
                    data = self._block_bytes(block)
                raw = memoryview(data)
                try:
                    for h in scan(raw, check_crc=check_crc):
                        yield h, raw[h.position : h.position + h.size]
                except BatchFormatError as exc:
                    raise CorruptSegmentError(str(exc), key=self.key) from exc
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def verify_content(self) -> None:
        """Check the SHA-256 over everything before the footer (once per reader)."""
        if self._verified:
            return
        digest = hashlib.sha256(self.payload[: self._footer_start]).hexdigest()
        if digest != self.footer.content_sha256:
            raise CorruptSegmentError("content SHA-256 mismatch", key=self.key)
        self._verified = True

    def data_batches(self, *, include_aborted: bool = False, from_offset: int | None = None,
                     check_crc: bool = True, prefetch: bool = False) -> Iterator[tuple[BatchHeader, memoryview]]:
        """(header, raw batch) of the data batches a read_committed consumer would read, in offset
        order: control batches never, batches of aborted transactions only with ``include_aborted``.

        A batch may hold records outside the footer's [start_offset, end_offset) (a compressed
        batch straddling the range start); callers that care compare offsets with the footer.
        """
        from kafka.errors import CorruptRecordError
        from kafka.record.default_records import DefaultRecordBatch

        pending = sorted(self.footer.aborted_transactions, key=lambda a: a[1])
        aborted_pids: set[int] = set()
        i = 0
        # Every batch is scanned (not only those past from_offset) so abort markers are tracked.
        for h, raw in self.batches(check_crc=check_crc, prefetch=prefetch):
            while i < len(pending) and pending[i][1] <= h.last_offset:
                aborted_pids.add(pending[i][0])
                i += 1
            if h.is_control:
                try:
                    for ctl in DefaultRecordBatch(bytes(raw)):
                        if ctl.abort:
                            aborted_pids.discard(h.producer_id)
                except (CorruptRecordError, ValueError, struct.error) as exc:
                    raise CorruptSegmentError(f"control batch at offset {h.base_offset}: {exc}",
                                              key=self.key) from exc
                continue
            if from_offset is not None and h.next_offset <= from_offset:
                continue
            if not include_aborted and h.is_transactional and h.producer_id in aborted_pids:
                continue
            yield h, raw

    def records(self, *, include_aborted: bool = False, from_offset: int | None = None,
                from_timestamp: int | None = None) -> Iterator[Record]:
        """Decode data records in offset order; control records are never yielded, and records of
        aborted transactions only with ``include_aborted`` (the Kafka consumer's read_committed rule).
        """
        from kafka.errors import CorruptRecordError
        from kafka.record.default_records import DefaultRecordBatch

        f = self.footer
        for h, raw in self.data_batches(include_aborted=include_aborted, from_offset=from_offset):
            try:
                for r in DefaultRecordBatch(bytes(raw)):
                    if r.offset < f.start_offset or r.offset >= f.end_offset:
                        continue
                    if from_offset is not None and r.offset < from_offset:
                        continue
                    if from_timestamp is not None and r.timestamp < from_timestamp:
                        continue
                    yield Record(f.topic, f.partition, r.offset, r.timestamp, r.timestamp_type, r.key,
                                 r.value, tuple(r.headers), h.producer_id, h.is_transactional)
            except (CorruptRecordError, ValueError, struct.error) as exc:
                raise CorruptSegmentError(f"batch at offset {h.base_offset}: {exc}", key=self.key) from exc
