"""An independent reader of backup format v1, written only from ``docs/format.md``.

The reader below uses only the standard library, ``zstandard`` and ``crc32c``. It parses the
trailer, footer, block index, blocks and record-batch headers of segments, decodes records (its
own varint parser; uncompressed, gzip and zstd batches) and applies the documented range and
read_committed rules. Every test checks that it agrees with the reference implementation. If this
reader needs something the spec does not say, the spec is incomplete.

``kafka_backup`` is imported only to build inputs (``SegmentWriter``, ``tests.batchkit``) and as
the reference to compare against (``SegmentReader``, ``encode_topic``, ``PartitionChain``,
``CommitRecord``).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import pytest
import zstandard

# Only to build inputs and as the reference to compare against; the reader below uses none of these.
from kafka_backup.catalog import CommitRecord, PartitionChain, decode_topic, encode_topic
from kafka_backup.errors import CorruptSegmentError
from kafka_backup.segment import SegmentReader, SegmentWriter

from tests.batchkit import make_batch, make_control

SPEC = Path(__file__).resolve().parents[2] / "docs" / "format.md"

# ------------------------------------------------------------------------------ the independent reader
MAGIC = b"KBSEG\x00\x01\n"  # §4.2
END_MAGIC = b"KBSEGEND"  # §4.5
TRAILER_SIZE = 20
MAX_FOOTER = 64 << 20
BATCH_HEADER = 61  # §4.8
ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL, ATTR_CONTROL = 0x08, 0x10, 0x20


class SpecError(Exception):
    """The object violates docs/format.md."""


@dataclass
class Batch:
    base_offset: int
    size: int
    leader_epoch: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    raw: bytes

    @property
    def compression(self) -> int:
        return self.attributes & 0x07

    @property
    def control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


@dataclass
class Rec:
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass
class Segment:
    footer: dict[str, Any]
    footer_start: int
    blocks: list[tuple[dict[str, Any], list[Batch]]]

    @property
    def batches(self) -> list[Batch]:
        return [b for _, bs in self.blocks for b in bs]


def read_segment(obj: bytes, *, expected_sha256: str | None = None) -> Segment:
    """§4.7 steps 1-7."""
    if expected_sha256 is not None and hashlib.sha256(obj).hexdigest() != expected_sha256:
        raise SpecError("object sha256 differs from the commit record")
    if len(obj) < len(MAGIC) + TRAILER_SIZE or obj[:8] != MAGIC:
        raise SpecError("bad magic or too short")
    flen, fcrc, end = struct.unpack(">QI8s", obj[-TRAILER_SIZE:])
    if end != END_MAGIC:
        raise SpecError("end marker missing")
    footer_start = len(obj) - TRAILER_SIZE - flen
    if flen > MAX_FOOTER or footer_start < 8:
        raise SpecError("footer length does not fit")
    raw_footer = obj[footer_start : len(obj) - TRAILER_SIZE]
    if crc32c.crc32c(raw_footer) != fcrc:
        raise SpecError("footer crc")
    footer = json.loads(raw_footer.decode("utf-8"))
    if footer.get("format_version") != 1:
        raise SpecError(f"unsupported format_version {footer.get('format_version')}")
    if hashlib.sha256(obj[:footer_start]).hexdigest() != footer["content_sha256"]:
        raise SpecError("content sha256")
    blocks = []
    for blk in footer["blocks"]:
        pos, stored = blk["position"], blk["stored_size"]
        if pos < 8 or pos + stored > footer_start:
            raise SpecError("block outside content")
        data = obj[pos : pos + stored]
        if crc32c.crc32c(data) != blk["crc32c"]:
            raise SpecError("block crc")
        if blk["codec"] == "zstd":
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=blk["raw_size"])
        elif blk["codec"] == "none":
            raw = data
        else:
            raise SpecError(f"unknown codec {blk['codec']}")
        if len(raw) != blk["raw_size"]:
            raise SpecError("raw size")
        blocks.append((blk, split_batches(raw)))
    return Segment(footer, footer_start, blocks)


def split_batches(raw: bytes) -> list[Batch]:
    """§4.8: consecutive whole v2 batches, each CRC-checked, using up the buffer exactly."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + BATCH_HEADER > len(raw):
            raise SpecError("truncated batch header")
        (base, length, epoch, magic, crc, attrs, lod, base_ts, max_ts, pid, pepoch, seq,
         count) = struct.unpack_from(">qiibIhiqqqhii", raw, pos)
        size = 12 + length
        if magic != 2 or length < 49 or pos + size > len(raw):
            raise SpecError("bad batch")
        body = raw[pos : pos + size]
        if crc32c.crc32c(body[21:]) != crc:
            raise SpecError("batch crc")
        out.append(Batch(base, size, epoch, crc, attrs, lod, base_ts, max_ts, pid, pepoch, seq, count, body))
        pos += size
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """§4.9: zig-zag, 7 bits per byte, least significant group first."""
    u, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            return (u >> 1) ^ -(u & 1), pos
        shift += 7


def _bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = _varint(buf, pos)
    if n < 0:
        return None, pos
    return buf[pos : pos + n], pos + n


def decode_records(b: Batch) -> list[tuple[Rec, bytes | None]]:
    """§4.9; returns (record, raw key) pairs. Handles compression none, gzip and zstd."""
    payload = b.raw[BATCH_HEADER:]
    if b.compression == 1:
        payload = gzip.decompress(payload)
    elif b.compression == 4:
        payload = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    elif b.compression != 0:
        raise NotImplementedError(f"compression {b.compression} is not decoded by this test reader")
    out, pos = [], 0
    for _ in range(b.records_count):
        length, pos = _varint(payload, pos)
        end = pos + length
        pos += 1  # attributes
        ts_delta, pos = _varint(payload, pos)
        off_delta, pos = _varint(payload, pos)
        key, pos = _bytes(payload, pos)
        value, pos = _bytes(payload, pos)
        nh, pos = _varint(payload, pos)
        headers = []
        for _ in range(nh):
            hk, pos = _bytes(payload, pos)
            hv, pos = _bytes(payload, pos)
            assert hk is not None
            headers.append((hk.decode("utf-8"), hv))
        if pos != end:
            raise SpecError("record length mismatch")
        ts = b.max_timestamp if b.log_append_time else b.base_timestamp + ts_delta
        out.append((Rec(b.base_offset + off_delta, ts, int(b.log_append_time), key, value, tuple(headers)), key))
    if pos != len(payload):
        raise SpecError("trailing bytes after the records")
    return out


def committed_records(seg: Segment, *, include_aborted: bool = False) -> list[Rec]:
    """§4.10 and §4.11: the read_committed rule and the range rule, over every batch in order."""
    f = seg.footer
    pending = sorted(((p, o) for p, o in f["aborted_transactions"]), key=lambda a: a[1])
    active: set[int] = set()
    i = 0
    out = []
    for b in seg.batches:
        while i < len(pending) and pending[i][1] <= b.last_offset:
            active.add(pending[i][0])
            i += 1
        if b.control:
            for _, key in decode_records(b):
                assert key is not None
                _version, ctype = struct.unpack(">hh", key[:4])
                if ctype == 0:
                    active.discard(b.producer_id)
            continue
        if not include_aborted and b.transactional and b.producer_id in active:
            continue
        out.extend(r for r, _ in decode_records(b) if f["start_offset"] <= r.offset < f["end_offset"])
    return out


# The documented footer semantics (§4.4, §4.12), computed from the batches alone.
def expected_footer_fields(seg: Segment) -> dict[str, Any]:
    f = seg.footer
    start = f["start_offset"]

    def in_range(b: Batch) -> int:
        if b.control:
            return 0
        if b.base_offset >= start:
            return b.records_count
        return sum(1 for r, _ in decode_records(b) if r.offset >= start)

    data = [b for b in seg.batches if not b.control]
    mins = [b.max_timestamp if b.log_append_time else b.base_timestamp for b in data]
    maxs = [b.max_timestamp for b in data]
    return {
        "record_count": sum(in_range(b) for b in seg.batches),
        "batch_count": len(seg.batches),
        "raw_bytes": sum(b.size for b in seg.batches),
        "min_timestamp": min((t for t in mins if t >= 0), default=None),
        "max_timestamp": max((t for t in maxs if t >= 0), default=None),
        "blocks": [
            {"raw_size": sum(b.size for b in bs), "first_offset": bs[0].base_offset,
             "next_offset": bs[-1].next_offset, "batches": len(bs), "records": sum(in_range(b) for b in bs),
             "max_timestamp": max([b.max_timestamp for b in bs if b.max_timestamp >= 0], default=-1),
             "codec": "zstd" if all(b.compression == 0 for b in bs) else "none"}
            for _, bs in seg.blocks
        ],
    }


def check_structure(seg: Segment) -> None:
    """Layout rules of §4.1, §4.3, §4.4 and §4.11 that are not checksums."""
    f = seg.footer
    pos = 8
    for blk, bs in seg.blocks:
        assert blk["position"] == pos, "blocks are contiguous from byte 8"
        pos += blk["stored_size"]
        assert bs, "a block holds at least one whole batch"
        if blk["codec"] == "none":
            assert blk["stored_size"] == blk["raw_size"] and all(b.compression != 0 for b in bs)
        else:
            assert all(b.compression == 0 for b in bs)
    assert pos == seg.footer_start, "the last block ends where the footer starts"
    batches = seg.batches
    for prev, nxt in itertools.pairwise(batches):
        assert nxt.base_offset >= prev.next_offset, "batches are in offset order and do not overlap"
    for b in batches[1:]:
        assert b.base_offset >= f["start_offset"], "only the first batch may straddle start_offset"
    if batches:
        assert batches[-1].next_offset <= f["end_offset"]
    ab = [tuple(a) for a in f["aborted_transactions"]]
    assert ab == sorted(set(ab), key=lambda a: (a[1], a[0])), "sorted by (first_offset, producer_id), unique"
    for key in ("format_version", "topic", "partition", "start_offset", "end_offset", "min_timestamp",
                "max_timestamp", "record_count", "batch_count", "raw_bytes", "aborted_transactions", "blocks",
                "content_sha256", "run_id"):
        assert key in f, key
    block_keys = {"position", "stored_size", "raw_size", "codec", "first_offset", "next_offset", "max_timestamp",
                  "batches", "records", "crc32c"}
    assert all(set(blk) == block_keys for blk, _ in seg.blocks)


# ------------------------------------------------------------------------------ inputs and comparison
TS = 1_700_000_000_000
HARD = [
    (TS, None, None, []),
    (TS + 1, b"", b"", []),
    (TS + 2, b"k", b"v", [("h", b"\x00\x01"), ("h", b"\xff"), ("e", b""), ("n", None), ("ü", b"x")]),
    (TS - 5, b"\x00\xff" * 10, b"x" * 5000, [("z", b"1"), ("a", b"2")]),
    (TS + 3, b"k" * 200, b"\x80" * 300, []),  # multi-byte varints
]


def _build(batches: list[bytes], *, start: int, end: int | None = None, aborted=(), block: int = 1 << 20,
           topic: str = "orders", partition: int = 0):
    w = SegmentWriter(topic, partition, start, block_raw_bytes=block, run_id="0123456789abcdef")
    for b in batches:
        w.add(b)
    w.add_aborted(aborted)
    return w.finish(end)


def _ref_records(payload: bytes, **kw: Any) -> list[Rec]:
    reader = SegmentReader.from_bytes(payload, key="ref")
    return [Rec(r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(r.headers))
            for r in reader.records(**kw)]


def _agree(data: Any) -> Segment:
    """Parse with the spec reader and check every documented property against the reference."""
    seg = read_segment(data.payload, expected_sha256=data.sha256)
    check_structure(seg)
    ref = SegmentReader.from_bytes(data.payload, key="ref", expected_sha256=data.sha256)
    rf = ref.footer
    f = seg.footer
    assert (f["topic"], f["partition"], f["start_offset"], f["end_offset"]) == (
        rf.topic, rf.partition, rf.start_offset, rf.end_offset)
    exp = expected_footer_fields(seg)
    for key in ("record_count", "batch_count", "raw_bytes", "min_timestamp", "max_timestamp"):
        assert f[key] == exp[key] == getattr(rf, key), key
    for (blk, _), e, rb in zip(seg.blocks, exp["blocks"], rf.blocks, strict=True):
        for key, value in e.items():
            assert blk[key] == value == getattr(rb, key), key
    assert [tuple(a) for a in f["aborted_transactions"]] == [tuple(a) for a in rf.aborted_transactions]
    # the batches, byte for byte, in the same order
    assert [b.raw for b in seg.batches] == [bytes(raw) for _, raw in ref.batches()]
    for include in (False, True):
        assert committed_records(seg, include_aborted=include) == _ref_records(data.payload, include_aborted=include)
    return seg


# ------------------------------------------------------------------------------ tests
def test_hard_records_across_many_blocks() -> None:
    batches = [make_batch(i * 5, HARD) for i in range(6)]
    seg = _agree(_build(batches, start=0, block=4096))
    assert len(seg.blocks) > 1 and {b["codec"] for b, _ in seg.blocks} == {"zstd"}
    recs = committed_records(seg)
    assert [r.offset for r in recs] == list(range(30))
    assert recs[0].key is None and recs[0].value is None and recs[1].key == b"" and recs[1].value == b""
    assert recs[2].headers == (("h", b"\x00\x01"), ("h", b"\xff"), ("e", b""), ("n", None), ("ü", b"x"))


def test_mixed_codecs_alternate_blocks() -> None:
    plain = make_batch(0, HARD)
    gz = make_batch(5, HARD, compression="gzip")
    zs = make_batch(10, HARD, compression="zstd")
    plain2 = make_batch(15, HARD)
    seg = _agree(_build([plain, gz, zs, plain2], start=0))
    assert [b["codec"] for b, _ in seg.blocks] == ["zstd", "none", "zstd"]
    assert [r.offset for r in committed_records(seg)] == list(range(20))


def test_producer_compressed_batches_are_stored_verbatim() -> None:
    lz4 = make_batch(0, HARD, compression="lz4")  # this reader does not decode lz4: headers and bytes only
    data = _build([lz4], start=0)
    seg = read_segment(data.payload, expected_sha256=data.sha256)
    check_structure(seg)
    assert [b["codec"] for b, _ in seg.blocks] == ["none"]
    assert seg.batches[0].raw == lz4 and lz4 in data.payload
    assert seg.footer["record_count"] == 5 == SegmentReader.from_bytes(data.payload, key="k").footer.record_count


def test_transactions_markers_and_aborts() -> None:
    batches = [
        make_batch(0, [(TS, b"c", b"1", [])] * 2, transactional=True, producer_id=7, producer_epoch=0),
        make_control(2, producer_id=7, commit=True),
        make_batch(3, [(TS, b"x", b"2", [])] * 2, transactional=True, producer_id=8, producer_epoch=0),
        make_batch(5, [(TS + 1, b"plain", b"p", [])]),
        make_control(6, producer_id=8, commit=False),
        make_batch(7, [(TS, b"y", b"3", [])], transactional=True, producer_id=8, producer_epoch=0),
        make_control(8, producer_id=8, commit=True),
        make_batch(9, [(TS, b"z", b"4", [])], transactional=True, producer_id=9, producer_epoch=0),
        make_control(10, producer_id=9, commit=False),
    ]
    seg = _agree(_build(batches, start=0, aborted=[(9, 9), (8, 3)]))
    assert [r.offset for r in committed_records(seg)] == [0, 1, 5, 7]
    assert [r.offset for r in committed_records(seg, include_aborted=True)] == [0, 1, 3, 4, 5, 7, 9]
    assert seg.footer["record_count"] == 7  # aborted data counted, control records not
    assert seg.footer["aborted_transactions"] == [[8, 3], [9, 9]]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_first_batch_straddling_the_start(compression: str) -> None:
    first = make_batch(0, [(TS + i, b"k", bytes([i]), []) for i in range(6)], compression=compression)
    seg = _agree(_build([first, make_batch(6, HARD)], start=4))
    assert seg.blocks[0][0]["first_offset"] == 0
    assert [r.offset for r in committed_records(seg)] == [4, 5, 6, 7, 8, 9, 10]
    assert seg.footer["record_count"] == 7


def test_log_append_time_compaction_holes_and_compacted_tail() -> None:
    lat = make_batch(10, [(TS, b"a", b"1", []), (TS - 9, b"b", b"2", [])], offset_deltas=[0, 5],
                     log_append_time=TS + 99)
    create = make_batch(16, [(TS + 50, b"c", b"3", []), (TS + 7, b"d", b"4", [])], offset_deltas=[0, 3])
    seg = _agree(_build([lat, create], start=10, end=40))
    recs = committed_records(seg)
    assert [(r.offset, r.timestamp, r.timestamp_type) for r in recs] == [
        (10, TS + 99, 1), (15, TS + 99, 1), (16, TS + 50, 0), (19, TS + 7, 0)]
    # min uses LogAppendTime's max_timestamp and CreateTime's base timestamp (§4.12)
    assert (seg.footer["min_timestamp"], seg.footer["max_timestamp"]) == (TS + 50, TS + 99)
    assert seg.footer["end_offset"] == 40 > seg.batches[-1].next_offset


def test_segment_without_batches() -> None:
    data = _build([], start=100, end=250)
    seg = _agree(data)
    assert seg.blocks == [] and seg.footer_start == 8
    assert seg.footer["content_sha256"] == hashlib.sha256(MAGIC).hexdigest()
    assert seg.footer["min_timestamp"] is None and seg.footer["record_count"] == 0


def test_many_batches_default_blocks() -> None:
    batches = [make_batch(i * 3, [(TS + i, b"key-%d" % i, b"v" * (i % 700), [("i", str(i).encode())])] * 3)
               for i in range(400)]
    seg = _agree(_build(batches, start=0))
    assert len(committed_records(seg)) == 1200


@pytest.mark.parametrize("where", ["magic", "block", "footer", "trailer", "sha"])
def test_both_readers_reject_corruption(where: str) -> None:
    data = _build([make_batch(0, HARD)], start=0)
    blob = bytearray(data.payload)
    seg = read_segment(data.payload)
    expected = None
    if where == "sha":  # intact object, but the commit record names another digest
        expected = "0" * 64
    else:
        pos = {"magic": 3, "block": 12, "footer": seg.footer_start + 5, "trailer": len(blob) - 2}[where]
        blob[pos] ^= 0x40
    with pytest.raises((SpecError, ValueError, zstandard.ZstdError)):
        s = read_segment(bytes(blob), expected_sha256=expected)
        committed_records(s)
    with pytest.raises(CorruptSegmentError):
        r = SegmentReader.from_bytes(bytes(blob), key="k", expected_sha256=expected)
        r.verify()
        list(r.records())


def test_both_readers_reject_an_unknown_version() -> None:
    data = _build([make_batch(0, HARD)], start=0)
    seg = read_segment(data.payload)
    doc = dict(seg.footer, format_version=2)
    fj = json.dumps(doc, separators=(",", ":")).encode()
    blob = data.payload[: seg.footer_start] + fj + struct.pack(">QI8s", len(fj), crc32c.crc32c(fj), END_MAGIC)
    with pytest.raises(SpecError, match="format_version"):
        read_segment(blob)
    with pytest.raises(CorruptSegmentError, match="version"):
        SegmentReader.from_bytes(blob, key="k")


# ------------------------------------------------------------------------------ the worked example
def _doc_hexdump() -> bytes:
    text = SPEC.read_text()
    marker = text.index("<!-- example-segment-hexdump")
    block = text[marker:].split("```text\n", 1)[1].split("```", 1)[0]
    out = bytearray()
    for line in block.splitlines():
        m = re.match(r"^([0-9a-f]{8}): ((?:[0-9a-f]{2} ?){1,16})", line)
        assert m, line
        assert int(m.group(1), 16) == len(out)
        out += bytes.fromhex(m.group(2).replace(" ", ""))
    return bytes(out)


def test_worked_example_in_the_spec_is_real() -> None:
    payload = _doc_hexdump()
    text = SPEC.read_text()
    sha = re.search(r"SHA-256 of the object \(the commit's `sha256`\):\s*`([0-9a-f]{64})`", text)
    assert sha and hashlib.sha256(payload).hexdigest() == sha.group(1)
    assert len(payload) == 615
    seg = read_segment(payload, expected_sha256=sha.group(1))
    check_structure(seg)
    f = seg.footer
    assert (f["topic"], f["partition"], f["start_offset"], f["end_offset"], f["record_count"]) == ("orders", 0, 0, 2, 2)
    assert committed_records(seg) == [
        Rec(0, TS, 0, b"k1", b"hello", (("src", b"web"),)),
        Rec(1, TS + 5, 0, b"k2", None, ()),
    ]
    assert committed_records(seg) == _ref_records(payload)
    # the decompressed block is exactly the batch the example's code builds
    assert seg.batches[0].raw == make_batch(0, [(TS, b"k1", b"hello", [("src", b"web")]), (TS + 5, b"k2", None, [])])
    # and the commit record shown in §3.1 describes this object
    commit = json.loads(re.search(r'```json\n(\{"batches":1,.*?\})\n```', text).group(1))  # type: ignore[union-attr]
    assert commit["sha256"] == sha.group(1) and commit["size"] == len(payload)
    assert (commit["records"], commit["batches"], commit["raw_bytes"]) == (f["record_count"], f["batch_count"],
                                                                          f["raw_bytes"])
    assert (commit["min_timestamp"], commit["max_timestamp"]) == (f["min_timestamp"], f["max_timestamp"])


# ------------------------------------------------------------------------------ keys and commit records
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def spec_encode_topic(topic: str) -> str:
    """§2.3, literally."""
    enc = "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in topic.encode("utf-8"))
    return "%2E" + enc[1:] if enc.startswith(".") else enc


def spec_decode_topic(enc: str) -> str:
    out, i = bytearray(), 0
    while i < len(enc):
        if enc[i] == "%":
            out.append(int(enc[i + 1 : i + 3], 16))
            i += 3
        else:
            out += enc[i].encode()
            i += 1
    return out.decode("utf-8")


TRICKY = ["orders", "a.b-c_d", "ünïcödé", "has space/slash", ".", "..", "...", ".hidden", "%41", "%2E", "a~b",
          "x:y", "a+b", "q?x#y&z=", "back\\slash", "tab\tnl\n", "日本語", "emoji😀", "-_.", "UPPER.lower",
          "a..b", "trailing.", "%", "100%"]


@pytest.mark.parametrize("topic", TRICKY)
def test_topic_encoding_matches_the_spec(topic: str) -> None:
    enc = spec_encode_topic(topic)
    assert enc == encode_topic(topic)
    assert spec_decode_topic(enc) == topic == decode_topic(enc)
    assert re.fullmatch(r"[A-Za-z0-9._~%-]+", enc) and enc not in {".", ".."} and not enc.startswith(".")


def test_spec_table_of_encodings() -> None:
    text = SPEC.read_text()
    section = text[text.index("### 2.3"):text.index("## 3.")]
    rows = re.findall(r"^\| `([^`]*)` \| `([^`]*)` \|$", section, re.M)
    assert len(rows) >= 8
    for topic, enc in rows:
        assert encode_topic(topic) == enc == spec_encode_topic(topic)


def test_keys_follow_the_documented_templates() -> None:
    topic = "a b/.c"
    chain = PartitionChain(None, topic, 12)  # type: ignore[arg-type]  # keys only; the store is never touched
    base = f"topics/{spec_encode_topic(topic)}/12"
    assert chain.commit_key(1234) == f"{base}/commits/{1234:020d}.json"
    assert chain.segment_key(5, 2**63 - 1, "0123456789abcdef") == (
        f"{base}/segments/{5:020d}-{2**63 - 1:020d}-0123456789abcdef.kbseg")
    assert chain.head_key == f"{base}/head.json"
    offsets = [0, 9, 10, 999, 10**12, 2**63 - 1]
    assert sorted(chain.commit_key(o) for o in offsets) == [chain.commit_key(o) for o in offsets]


def test_commit_record_fields_match_the_spec() -> None:
    seg = CommitRecord(kind="segment", topic="t", partition=0, start=0, end=2, run_id="r", committed_at="x",
                       segment="segments/s.kbseg", size=1, sha256="0" * 64, records=2, batches=1, raw_bytes=9,
                       min_timestamp=None, max_timestamp=5)
    doc = json.loads(seg.to_json())
    assert set(doc) == {"format_version", "kind", "topic", "partition", "start", "end", "run_id", "committed_at",
                        "segment", "size", "sha256", "records", "batches", "raw_bytes", "max_timestamp"}
    assert "min_timestamp" not in doc  # null fields are left out
    gap = CommitRecord(kind="gap", topic="t", partition=0, start=2, end=7, run_id="r", committed_at="x",
                       reason="retention", log_start_offset=7)
    assert set(json.loads(gap.to_json())) == {"format_version", "kind", "topic", "partition", "start", "end",
                                              "run_id", "committed_at", "size", "records", "batches", "raw_bytes",
                                              "reason", "log_start_offset"}
    documented = set(re.findall(r"^\| `(\w+)` \| (?:int|string) \| (?:both|segment|gap) \|",
                                SPEC.read_text(), re.M))
    assert documented == set(doc) | {"min_timestamp", "reason", "log_start_offset"}
