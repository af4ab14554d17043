"""The batch rewriting restore relies on: what it changes in a stored batch, and its own encoder."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka_backup._batches import ATTR_TRANSACTIONAL, scan
from kafka_backup._produce import encode_batch, next_sequence, stamp

RECORDS = [
    (1_700_000_000_000, None, None, (("n", None),)),
    (1_700_000_000_005, b"k", None, (("a", b"1"), ("n", None), ("a", b""))),
    (1_699_999_999_000, None, b"", ()),  # older than the first: a negative timestamp delta
    (1_700_000_000_001, b"", b"v" * 300, (("\u00e9", b"\xff"),)),
]


def _decoded(batch: bytes | bytearray) -> list[tuple[int, int, bytes | None, bytes | None, tuple[object, ...]]]:
    return [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in DefaultRecordBatch(bytes(batch))]


def test_next_sequence_wraps_like_kafka() -> None:
    assert next_sequence(0, 5) == 5
    assert next_sequence(2**31 - 6, 5) == 2**31 - 1
    # sequences 2**31-3 .. 2**31-1, 0, 1: the next batch starts at 2
    assert next_sequence(2**31 - 3, 5) == 2


@pytest.mark.parametrize("codec", [0, 1, 3, 4])
def test_encode_batch_round_trips_nulls_and_codecs(codec: int) -> None:
    batch = encode_batch(RECORDS, codec=codec, producer_id=7, producer_epoch=3, base_sequence=11)
    [h] = list(scan(batch))  # raises on a bad CRC
    assert h.compression == codec and h.attributes & ATTR_TRANSACTIONAL
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.records_count) == (7, 3, 11, 4)
    assert (h.base_timestamp, h.max_timestamp, h.last_offset_delta) == (RECORDS[0][0], 1_700_000_000_005, 3)
    assert _decoded(batch) == [(i, ts, k, v, tuple(hs)) for i, (ts, k, v, hs) in enumerate(RECORDS)]


def test_encode_batch_without_a_codec_library_goes_uncompressed(monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka import codec as kcodec

    monkeypatch.setattr(kcodec, "has_snappy", lambda: False)
    batch = encode_batch(RECORDS[:1], codec=2, producer_id=1, producer_epoch=0, base_sequence=0)
    [h] = list(scan(batch))
    assert h.compression == 0 and _decoded(batch)[0][2:] == (None, None, (("n", None),))


@pytest.mark.parametrize("compression", [0, 3])
def test_stamp_changes_only_the_writer_fields(compression: int) -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(50):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=b"value %d" % i,
                       headers=[("h", b"%d" % i)])
    stored = bytearray(builder.build())
    stored[0:8] = (123_456).to_bytes(8, "big")  # as a broker stored it: a real base offset and leader epoch
    stored[12:16] = (5).to_bytes(4, "big")
    out = stamp(memoryview(stored), producer_id=99, producer_epoch=2, base_sequence=1000)
    [h] = list(scan(out))  # the CRC was recomputed
    assert (h.base_offset, h.leader_epoch, h.producer_id, h.producer_epoch, h.base_sequence) == (0, -1, 99, 2, 1000)
    assert h.compression == compression and h.is_transactional and not h.is_control
    assert out[61:] == stored[61:], "the records are sent byte for byte"
    assert [r[1:] for r in _decoded(out)] == [r[1:] for r in _decoded(stored)]
