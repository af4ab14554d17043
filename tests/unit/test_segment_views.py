"""SegmentWriter keeps views of the fetched buffers instead of copying them: the stored bytes must
not depend on how the batches were split across buffers, on threads, or on a caller reusing its
buffer afterwards."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from kafka_backup._batches import scan
from kafka_backup.segment import SegmentReader, SegmentWriter

from tests.batchkit import make_batch

TS = 1_700_000_000_000


def _batches() -> list[bytes]:
    out = []
    for i in range(40):
        compression = "lz4" if 10 <= i < 20 else "none"  # a run of producer-compressed blocks in between
        out.append(make_batch(i * 3, [(TS + i, b"k%d" % i, b"value-%d-" % i * 40, [])] * 3, compression=compression))
    return out


def _payload(chunks: list[bytes | bytearray | memoryview], **kw: object) -> bytes:
    w = SegmentWriter("t", 0, 0, block_raw_bytes=4096, run_id="r", **kw)  # type: ignore[arg-type]
    for chunk in chunks:
        w.add(chunk)
    return w.finish().payload


def test_stored_bytes_do_not_depend_on_buffers_or_threads() -> None:
    batches = _batches()
    whole = _payload([b"".join(batches)])
    # one buffer per batch: blocks span several buffers and are joined before compression
    assert _payload([memoryview(b).toreadonly() for b in batches]) == whole
    backlog = threading.BoundedSemaphore(2)
    with ThreadPoolExecutor(2) as pool:
        assert _payload([b"".join(batches[:7]), b"".join(batches[7:])], executor=pool, backlog=backlog) == whole
    assert backlog.acquire(blocking=False) and backlog.acquire(blocking=False)  # every slot came back
    reader = SegmentReader.from_bytes(whole, key="k")
    assert [bytes(b) for _, b in reader.batches()] == batches


def test_a_reused_mutable_buffer_does_not_change_the_segment() -> None:
    batches = _batches()
    expected = _payload([b"".join(batches)])
    w = SegmentWriter("t", 0, 0, block_raw_bytes=4096, run_id="r")
    buf = bytearray(b"".join(batches))
    w.add(buf)
    buf[:] = b"\x00" * len(buf)  # the caller reuses its buffer before the segment is finished
    assert w.finish().payload == expected


def test_read_only_buffers_are_kept_as_views_not_copied() -> None:
    buf = memoryview(b"".join(_batches()[:3])).toreadonly()
    w = SegmentWriter("t", 0, 0)
    w.add(buf, list(scan(buf)))
    pieces = w._pending.pieces
    assert len(pieces) == 1 and pieces[0].obj is buf.obj and len(pieces[0]) == len(buf)


def test_a_rejected_batch_leaves_what_came_before_it_intact() -> None:
    batches = _batches()
    w = SegmentWriter("t", 0, 0, block_raw_bytes=4096, run_id="r")
    try:
        w.add(b"".join(batches[:5] + batches[2:3]))  # the sixth goes backwards
    except ValueError:
        pass
    else:
        raise AssertionError("a batch before next_offset was accepted")
    reader = SegmentReader.from_bytes(w.finish().payload, key="k")
    assert [bytes(b) for _, b in reader.batches()] == batches[:5]
