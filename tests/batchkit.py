"""Build real v2 record batches offline (kafka-python's own builder) for unit tests."""

from __future__ import annotations

import struct

import crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _fix(buf: bytearray, *, base_offset: int, attrs_or: int = 0) -> bytes:
    struct.pack_into(">q", buf, 0, base_offset)
    if attrs_or:
        (attrs,) = struct.unpack_from(">h", buf, 21)
        struct.pack_into(">h", buf, 21, attrs | attrs_or)
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return bytes(buf)


def make_batch(base_offset: int, records: list[tuple], *, compression: str = "none",
               transactional: bool = False, producer_id: int = -1, producer_epoch: int = -1,
               offset_deltas: list[int] | None = None, log_append_time: int | None = None) -> bytes:
    """records: (timestamp, key, value, headers) tuples. offset_deltas simulate compaction holes."""
    b = DefaultRecordBatchBuilder(2, CODECS[compression], transactional, producer_id, producer_epoch,
                                  0 if producer_id >= 0 else -1, 1 << 30)
    for i, (ts, key, value, headers) in enumerate(records):
        delta = offset_deltas[i] if offset_deltas else i
        b.append(delta, timestamp=ts, key=key, value=value, headers=list(headers))
    buf = b.build()
    extra = 0
    if log_append_time is not None:
        struct.pack_into(">q", buf, 35, log_append_time)
        extra |= 0x08
    return _fix(buf, base_offset=base_offset, attrs_or=extra)


def make_control(base_offset: int, *, producer_id: int, producer_epoch: int = 0, commit: bool,
                 timestamp: int = 1_700_000_000_000) -> bytes:
    """A transaction marker batch (what the broker writes on commit/abort)."""
    b = DefaultRecordBatchBuilder(2, 0, True, producer_id, producer_epoch, -1, 1 << 20)
    b.append(0, timestamp=timestamp, key=struct.pack(">hh", 0, 1 if commit else 0),
             value=struct.pack(">hi", 0, 0), headers=[])
    return _fix(b.build(), base_offset=base_offset, attrs_or=0x20)
