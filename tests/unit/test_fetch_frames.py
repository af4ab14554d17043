"""The in-place Fetch path of ``_kafka_raw``: the response parser, the frame receiver, the buffer
pool and the trimming of a partition's records, offline (no broker).

Responses are encoded by kafka-python's own ``FetchResponse`` (an independent encoder) at every
version RawKafka negotiates (v4..12) and must come back field for field, with the records as views
of the received frame; every truncation and a few corruptions must raise, never parse.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Generator
from typing import Any

import kafka.errors as kerr
import pytest
from kafka.protocol.consumer import FetchResponse
from kafka.protocol.parser import KafkaProtocol
from kafka_backup import _kafka_raw as raw
from kafka_backup._batches import scan
from kafka_backup.errors import KafkaClientError

from tests.batchkit import make_batch

VERSIONS = range(raw.FETCH_MIN_VERSION, raw.FETCH_MAX_VERSION + 1)
TS = 1_700_000_000_000

raw.check_internals()  # installs the frame path of KafkaProtocol.receive_bytes


def _batches(base: int, n: int) -> bytes:
    return b"".join(make_batch(base + 2 * i, [(TS, b"k", b"v%d" % i, []), (TS, None, b"w", [])]) for i in range(n))


def _partition(version: int, index: int, *, records: bytes | None, aborted: list[tuple[int, int]] | None,
               error: int = 0, tagged: bool = False) -> Any:
    rp = FetchResponse.FetchableTopicResponse.PartitionData
    fields: dict[str, Any] = dict(
        partition_index=index, error_code=error, high_watermark=100 + index, last_stable_offset=90 + index,
        log_start_offset=5 + index, preferred_read_replica=-1, records=records,
        aborted_transactions=None if aborted is None else [
            rp.AbortedTransaction(producer_id=p, first_offset=f) for p, f in aborted])
    if tagged:  # v12 tagged fields a broker may add; the parser must step over them
        fields["current_leader"] = rp.LeaderIdAndEpoch(leader_id=1, leader_epoch=7)
        fields["diverging_epoch"] = rp.EpochEndOffset(epoch=3, end_offset=42)
    return rp(**fields)


def _response(version: int, *, tagged: bool = False) -> tuple[Any, list[tuple[str, int, bytes | None, Any]]]:
    """A response with two topics and partitions of every shape; also what each should parse to."""
    rt = FetchResponse.FetchableTopicResponse
    b0 = _batches(0, 3)
    b1 = _batches(10, 1)[:-7]  # ends in a partial batch, as a broker cutting at max_bytes sends it
    parts = {
        ("orders", 0): (b0, [(7, 4), (8, 1)]),
        ("orders", 2): (b"", []),
        ("orders", 5): (None, None),
        ("ünïcode.topic", 1): (b1, None),
    }
    topics: dict[str, list[Any]] = {}
    for (t, p), (records, aborted) in parts.items():
        topics.setdefault(t, []).append(_partition(version, p, records=records, aborted=aborted,
                                                   tagged=tagged and p == 0))
    response = FetchResponse(throttle_time_ms=12, error_code=0, session_id=0,
                             responses=[rt(topic=t, partitions=ps) for t, ps in topics.items()], version=version)
    expected = [(t, p, records, None if aborted is None else tuple(aborted))
                for (t, p), (records, aborted) in parts.items()]
    return response, expected


def _check(parsed: raw.RawFetchResponse, version: int, expected: list[tuple[str, int, bytes | None, Any]]) -> None:
    assert (parsed.malformed, parsed.API_VERSION, parsed.throttle_time_ms) == (None, version, 12)
    got = [(t.topic, p.partition_index, None if p.records is None else bytes(p.records), p.aborted_transactions)
           for t in parsed.responses or () for p in t.partitions]
    assert got == expected
    for t in parsed.responses or ():
        for p in t.partitions:
            assert (p.high_watermark, p.last_stable_offset) == (100 + p.partition_index, 90 + p.partition_index)
            assert p.log_start_offset == (5 + p.partition_index if version >= 5 else -1)
            assert p.records is None or isinstance(p.records, memoryview)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_parses_field_for_field(version: int) -> None:
    response, expected = _response(version, tagged=version >= 12)
    _check(raw.parse_fetch_response(memoryview(response.encode()), version), version, expected)


@pytest.mark.parametrize("version", VERSIONS)
def test_through_kafka_protocol_records_are_views_of_the_frame(version: int) -> None:
    """As _read_frames delivers it: a whole _Frame, paired with our request by correlation id."""
    parser = KafkaProtocol(client_id="t", receive_message_max_bytes=1 << 20)
    request = raw._fetch_request({("orders", 0): (0, -1)}, [("orders", 0)], max_wait_ms=1, max_bytes=1,
                                 partition_max_bytes=1)
    request.API_VERSION = version
    correlation_id = parser.send_request(request)
    response, expected = _response(version)
    response.with_header(correlation_id=correlation_id)
    body = response.encode(header=True)
    buf = bytearray(body) + b"\xee" * 100  # a pooled buffer is usually longer than the frame
    [(got_id, parsed)] = parser.receive_bytes(raw._Frame(buf, len(body)))
    assert got_id == correlation_id
    _check(parsed, version, expected)
    views = [p.records for t in parsed.responses for p in t.partitions if p.records]
    assert views and all(v.obj is buf for v in views)  # no copy was made


@pytest.mark.parametrize("version", [4, 5, 7, 11, 12])
def test_every_truncation_raises(version: int) -> None:
    response, _ = _response(version, tagged=version >= 12)
    body = response.encode()
    for cut in range(len(body)):
        with pytest.raises(raw.FetchFrameError):
            raw.parse_fetch_response(memoryview(body[:cut]), version)


@pytest.mark.parametrize("version", [4, 12])
def test_trailing_bytes_raise(version: int) -> None:
    response, _ = _response(version)
    with pytest.raises(raw.FetchFrameError, match="left over"):
        raw.parse_fetch_response(memoryview(response.encode() + b"\x00"), version)


def _one_partition_body(version: int, records_len: bytes) -> bytes:
    """throttle, [error, session], 1 topic "t", 1 partition with no aborted list, then a records length."""
    flexible = version >= 12
    out = struct.pack(">i", 0) + (struct.pack(">hi", 0, 0) if version >= 7 else b"")
    out += (b"\x02" + b"\x02t" + b"\x02") if flexible else (struct.pack(">i", 1) + struct.pack(">h", 1) + b"t"
                                                             + struct.pack(">i", 1))
    out += struct.pack(">ihqq", 0, 0, 10, 10) + (struct.pack(">q", 0) if version >= 5 else b"")
    out += b"\x00" if flexible else struct.pack(">i", -1)  # null aborted_transactions
    out += struct.pack(">i", -1) if version >= 11 else b""
    return out + records_len


@pytest.mark.parametrize(("version", "records_len", "words"), [
    (4, struct.pack(">i", -2), "records length is -2"),
    (11, struct.pack(">i", 1 << 30), "needs 1073741824 bytes"),
    (12, b"\xff\xff\xff\xff\xff\x01", "varint longer than 5 bytes"),
])
def test_corrupt_lengths_raise(version: int, records_len: bytes, words: str) -> None:
    with pytest.raises(raw.FetchFrameError, match=words):
        raw.parse_fetch_response(memoryview(_one_partition_body(version, records_len)), version)


def test_null_records_and_version_bounds() -> None:
    for version in (4, 12):
        # v12: null records (0), then no tagged fields for the partition, the topic, the response
        null = b"\x00" * 4 if version >= 12 else struct.pack(">i", -1)
        parsed = raw.parse_fetch_response(memoryview(_one_partition_body(version, null)), version)
        assert parsed.responses and parsed.responses[0].partitions[0].records is None
    with pytest.raises(raw.FetchFrameError, match="outside"):
        raw.parse_fetch_response(memoryview(b""), 13)


def test_malformed_response_fails_the_fetch_naming_the_broker() -> None:
    decoder = raw._RawFetchDecoder(7)
    frame = raw._Frame(bytearray(b"\x00\x00\x00\x05" + b"\x00\x00"), 6)
    frame.seek(decoder.parse_header(frame).correlation_id and 4)
    parsed = decoder.decode(frame)
    assert parsed.malformed and "throttle_time_ms" in parsed.malformed
    client = object.__new__(raw.RawKafka)
    with pytest.raises(KafkaClientError, match=r"broker 3 sent a malformed Fetch v7 response"):
        client._parse(parsed, 3, [("t", 0)], {("t", 0): 0})


# ------------------------------------------------------------------------------------------ trimming
def _part(records: bytes | memoryview | None) -> raw.RawPartitionData:
    view = None if records is None else memoryview(records).toreadonly()
    return raw.RawPartitionData(0, 0, 99, 99, 0, ((1, 2),), view)


def test_partition_result_keeps_whole_batches_from_the_offset_as_views() -> None:
    data = bytearray(_batches(0, 4))  # batches at offsets 0-1, 2-3, 4-5, 6-7
    headers = list(scan(data))
    cut = memoryview(data)[: len(data) - 10]  # the last batch is partial
    out = raw._partition_result(("t", 0), 3, _part(cut), node_id=1)
    assert bytes(out.records) == bytes(data[headers[1].position : headers[3].position])  # 2-3 holds offset 3
    assert isinstance(out.records, memoryview) and out.records.obj is data and out.records.readonly
    assert out.aborted_transactions == ((1, 2),) and not out.out_of_range
    assert raw._partition_result(("t", 0), 8, _part(data), node_id=1).records == b""  # all before the offset
    assert raw._partition_result(("t", 0), 0, _part(None), node_id=1).records == b""
    assert raw._partition_result(("t", 0), 0, _part(data[:20]), node_id=1).records == b""  # only a partial one


def test_partition_result_rejects_malformed_batches() -> None:
    bad = bytearray(_batches(0, 2))
    bad[16] = 1  # magic 1 is not a v2 batch
    with pytest.raises(KafkaClientError, match="malformed record batches"):
        raw._partition_result(("t", 0), 0, _part(bad), node_id=1)


# ------------------------------------------------------------------------------------------ buffers
def test_frame_pool_reuses_a_buffer_only_once_nothing_views_it() -> None:
    pool = raw._FramePool(keep=3)
    small = pool.take(100)
    assert len(small) == 100 and pool.take(100) is not small  # small frames are not pooled
    a = pool.take(200_000)
    view = memoryview(a)[10:20]  # a fetch's records still in use
    b = pool.take(200_000)
    assert b is not a
    big = pool.take(1 << 20)
    assert big is not a and big is not b
    assert pool.take(150_000) is b  # a is still viewed
    view.release()
    assert pool.take(150_000) in (a, b)
    assert pool.take(100_000) is not big  # the smallest free buffer that fits
    assert pool.take(500_000) is big
    held = [memoryview(pool.take(300_000)) for _ in range(3)]  # more in use than kept: still served
    assert len({id(h.obj) for h in held}) == 3 and any(h.obj is big for h in held)


# ------------------------------------------------------------------------------------------ receiving
class _Wait:
    def __await__(self) -> Generator[None, None, None]:
        yield


class _Net:
    def wait_read(self, sock: Any) -> _Wait:
        return _Wait()


class _Protocol:
    def __init__(self, max_frame: int) -> None:
        self.frames: list[bytes] = []
        self.parser = type("P", (), {"_max_frame_size": max_frame})()
        self._sensors = None

    def data_received(self, frame: Any) -> None:
        assert isinstance(frame, raw._Frame)
        self.frames.append(bytes(frame.view()))


class _Transport:
    def __init__(self, sock: socket.socket, max_frame: int = 1 << 22) -> None:
        self._net = _Net()
        self._sock = sock
        self._read = True
        self._closed = False
        self._protocol = _Protocol(max_frame)
        self.last_read = 0.0
        self.error: BaseException | None = None

    def abort(self, error: BaseException | None = None) -> None:
        self._closed = True
        self.error = error


def _pump(coro: Any) -> bool:
    """Run the receive loop until it waits for the socket again; False once it has returned."""
    try:
        coro.send(None)
    except StopIteration:
        return False
    return True


def test_read_frames_delivers_whole_frames_however_the_bytes_arrive() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    t = _Transport(a)
    coro = raw._read_frames(t)
    try:
        assert _pump(coro)  # waiting for the first bytes
        payloads = [b"x" * 10, b"", bytes(range(256)) * 1000, b"y" * 70_000]
        wire = b"".join(struct.pack(">i", len(p)) + p for p in payloads)
        for i in range(0, len(wire), 3_001):  # split across lengths, frames and reads
            b.sendall(wire[i : i + 3_001])
            assert _pump(coro)
        assert t._protocol.frames == payloads and t.error is None
        b.sendall(struct.pack(">i", 5) + b"ab")  # a frame cut by the peer closing
        b.close()
        while _pump(coro):
            pass
        assert isinstance(t.error, kerr.KafkaConnectionError) and len(t._protocol.frames) == 4
    finally:
        coro.close()
        a.close()


def test_read_frames_refuses_an_oversized_frame() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    t = _Transport(a, max_frame=1000)
    coro = raw._read_frames(t)
    try:
        _pump(coro)
        b.sendall(struct.pack(">i", 1001) + b"z" * 10)
        while _pump(coro):
            pass
        assert isinstance(t.error, kerr.InvalidReceiveError) and "1001" in str(t.error)
        assert t._protocol.frames == []
    finally:
        coro.close()
        a.close()
        b.close()
