"""Segment format v1: round trip, fidelity, transactions, and corruption detection."""

from __future__ import annotations

import hashlib

import pytest
from kafka_backup._batches import BatchFormatError, complete_length, scan
from kafka_backup.errors import CorruptSegmentError
from kafka_backup.segment import MAGIC, SegmentReader, SegmentWriter

from tests.batchkit import make_batch, make_control

TS = 1_700_000_000_000
HARD = [
    (TS, None, None, []),  # null key, tombstone
    (TS + 1, b"", b"", []),  # empty, not null
    (TS + 2, b"k", b"v", [("h", b"\x00\x01"), ("h", b"\xff"), ("e", b""), ("n", None)]),
    (TS - 5, b"\x00\xff" * 10, b"x" * 5000, [("z", b"1"), ("a", b"2")]),
]


def _segment(*batches: bytes, start: int = 0, end: int | None = None, aborted=()) -> SegmentReader:
    w = SegmentWriter("t.o-p_c", 3, start, block_raw_bytes=4096)
    buf = b"".join(batches)
    w.add(buf)
    w.add_aborted(aborted)
    data = w.finish(end)
    return SegmentReader.from_bytes(data.payload, key="k/seg", expected_sha256=data.sha256)


@pytest.mark.parametrize("compression", ["none", "gzip", "lz4", "zstd"])
def test_round_trip_every_field(compression: str) -> None:
    b1 = make_batch(0, HARD, compression=compression)
    b2 = make_batch(4, HARD, compression=compression)
    reader = _segment(b1, b2)
    recs = list(reader.records())
    assert [r.offset for r in recs] == list(range(8))
    for r, src in zip(recs, HARD * 2, strict=True):
        assert (r.timestamp, r.key, r.value, list(r.headers)) == (src[0], src[1], src[2], src[3])
        assert r.timestamp_type == 0 and r.topic == "t.o-p_c" and r.partition == 3
    f = reader.footer
    assert (f.start_offset, f.end_offset, f.record_count, f.batch_count) == (0, 8, 8, 2)
    assert (f.min_timestamp, f.max_timestamp) == (TS, TS + 2)
    # the batches come back byte-for-byte
    assert b"".join(bytes(raw) for _, raw in reader.batches()) == b1 + b2


def test_uncompressed_batches_are_zstd_framed_and_compressed_ones_kept() -> None:
    plain = make_batch(0, [(TS, b"k", b"a" * 2000, [])] * 20)
    lz4 = make_batch(20, [(TS, b"k", b"b" * 2000, [])] * 20, compression="lz4")
    reader = _segment(plain, lz4)
    codecs = [b.codec for b in reader.footer.blocks]
    assert codecs[0] == "zstd" and codecs[-1] == "none"
    assert len(reader.payload) < len(plain) + len(lz4)
    assert lz4 in bytes(reader.payload)  # stored as the producer compressed it


def test_log_append_time_and_compaction_holes() -> None:
    b = make_batch(10, [(TS, b"a", b"1", []), (TS, b"b", b"2", [])], offset_deltas=[0, 5],
                   log_append_time=TS + 99)
    reader = _segment(b, start=10, end=20)
    recs = list(reader.records())
    assert [(r.offset, r.timestamp, r.timestamp_type) for r in recs] == [(10, TS + 99, 1), (15, TS + 99, 1)]
    assert reader.footer.end_offset == 20  # may extend past the last batch (compacted tail)


def test_aborted_transactions_and_markers_are_filtered() -> None:
    committed = make_batch(0, [(TS, b"c", b"1", [])] * 2, transactional=True, producer_id=7, producer_epoch=0)
    commit = make_control(2, producer_id=7, commit=True)
    aborted = make_batch(3, [(TS, b"x", b"2", [])] * 2, transactional=True, producer_id=8, producer_epoch=0)
    abort = make_control(5, producer_id=8, commit=False)
    later = make_batch(6, [(TS, b"y", b"3", [])], transactional=True, producer_id=8, producer_epoch=0)
    later_commit = make_control(7, producer_id=8, commit=True)
    reader = _segment(committed, commit, aborted, abort, later, later_commit, aborted=[(8, 3)])
    assert [r.offset for r in reader.records()] == [0, 1, 6]
    assert [r.offset for r in reader.records(include_aborted=True)] == [0, 1, 3, 4, 6]
    assert reader.footer.record_count == 5  # control records are not counted


def test_point_in_time_filters() -> None:
    batches = [make_batch(i * 3, [(TS + i * 3 + j, b"k", b"v" * 500, []) for j in range(3)]) for i in range(10)]
    reader = _segment(*batches)
    assert [r.offset for r in reader.records(from_offset=14)][:2] == [14, 15]
    assert next(r.offset for r in reader.records(from_timestamp=TS + 20)) == 20


def test_first_batch_may_start_before_the_range() -> None:
    b = make_batch(0, [(TS, b"k", b"v", [])] * 5, compression="zstd")
    reader = _segment(b, start=3)
    assert [r.offset for r in reader.records()] == [3, 4]
    assert reader.footer.record_count == 2


@pytest.mark.parametrize("where", ["magic", "block", "footer", "trailer"])
def test_any_flipped_byte_is_detected(where: str) -> None:
    w = SegmentWriter("t", 0, 0)
    w.add(make_batch(0, [(TS, b"k", b"v" * 100, [])] * 10))
    data = w.finish()
    blob = bytearray(data.payload)
    pos = {"magic": 2, "block": len(MAGIC) + 5, "footer": len(blob) - 40, "trailer": len(blob) - 3}[where]
    blob[pos] ^= 0x01
    with pytest.raises(CorruptSegmentError) as info:
        r = SegmentReader.from_bytes(bytes(blob), key="topics/t/0/seg")
        r.verify()
        list(r.records())
    assert "topics/t/0/seg" in str(info.value)
    # the commit record's whole-object hash catches it too
    with pytest.raises(CorruptSegmentError, match="SHA-256"):
        SegmentReader.from_bytes(bytes(blob), key="x", expected_sha256=data.sha256)


@pytest.mark.parametrize("cut", [1, 10, 100, 1000])
def test_truncation_is_detected(cut: int) -> None:
    w = SegmentWriter("t", 0, 0)
    w.add(make_batch(0, [(TS, b"k", b"v" * 100, [])] * 10))
    payload = w.finish().payload
    with pytest.raises(CorruptSegmentError, match="seg-key"):
        SegmentReader.from_bytes(payload[:-cut], key="seg-key").verify()


def test_batch_crc_checked_on_add() -> None:
    bad = bytearray(make_batch(0, [(TS, b"k", b"v", [])]))
    bad[-1] ^= 0xFF
    with pytest.raises(BatchFormatError, match="CRC"):
        SegmentWriter("t", 0, 0).add(bytes(bad))


def test_partial_trailing_batch_is_dropped() -> None:
    b = make_batch(0, [(TS, b"k", b"v", [])]) + make_batch(1, [(TS, b"k", b"v", [])])
    assert complete_length(b + b[:30]) == len(b)
    assert [h.base_offset for h in scan(b[: complete_length(b + b[:30])])] == [0, 1]


def test_segment_is_deterministic_given_the_same_batches() -> None:
    b = make_batch(0, HARD)
    w1, w2 = SegmentWriter("t", 0, 0, run_id="r"), SegmentWriter("t", 0, 0, run_id="r")
    w1.add(b)
    w2.add(b)
    assert hashlib.sha256(w1.finish().payload).digest() == hashlib.sha256(w2.finish().payload).digest()
