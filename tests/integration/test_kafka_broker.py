"""The local Kafka 4 broker (dev/kafka.py) and kafka-python 3.0.12 together show what backups rely on.

These tests pin down broker behaviour that the backup format must preserve or tolerate: exact
record fields (null vs empty, duplicate ordered headers, timestamps), offset gaps left by
transaction markers, aborted records and compaction, and a log start offset moved by
``delete_records``.  They run against the real broker, never a mock, each on its own topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.integration

#: (key, value, headers, timestamp_ms): key and value both null and empty somewhere.  KafkaProducer
#: cannot send a null header value or a record whose key and value are both null (see
#: test_kafka_python_producer_refuses_what_the_protocol_allows), so those are absent here.
RECORDS: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]] = [
    (b"k1", b"v1", [("h", b"\x00\x01"), ("h", b"\xff"), ("e", b"")], 1_600_000_000_000),
    (None, b"no key", [], 1_600_000_000_001),
    (b"", b"", [], 1_600_000_000_002),
    (b"k1", None, [("why", b"tombstone")], 1_600_000_000_003),  # a tombstone for k1
    (b"", None, [("h", b"")], 1_500_000_000_000),  # older than its predecessor
    (b"\x00bin\xff", bytes(range(256)), [("\u00e9t\u00e9", b"utf8 key")], 1_600_000_000_004),
]


def _topic(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def admin(bootstrap_servers: str) -> Iterator[Any]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    try:
        yield client
    finally:
        client.close()


def _create(admin: Any, topic: str, configs: dict[str, str] | None = None) -> TopicPartition:
    # retention.ms=-1: RECORDS carry 2017 timestamps, which the test broker's time-based retention
    # deletes within seconds (the consumer then read an empty partition and the test failed).
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"retention.ms": "-1", **(configs or {})}}},
                        wait_for_metadata=True)
    return TopicPartition(topic, 0)


def _producer(bootstrap_servers: str, **extra: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=0, **extra)


def _consumer(bootstrap_servers: str, **extra: Any) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", **extra)


def _read_all(consumer: KafkaConsumer, tp: TopicPartition, timeout_s: float = 20.0) -> list[Any]:
    """Every record from the log start to the end offset, bounded by position (not by count).

    Markers, aborted and compacted records leave holes, so counting records would never end.
    """
    consumer.assign([tp])
    start = consumer.beginning_offsets([tp])[tp]
    end = consumer.end_offsets([tp])[tp]
    consumer.seek(tp, start)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < end:
        assert time.monotonic() < deadline, f"stuck at {consumer.position(tp)} before end {end}"
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
    return out


def test_record_fields_round_trip_exactly(bootstrap_servers: str, admin: Any) -> None:
    tp = _create(admin, _topic("fields"))
    with _producer(bootstrap_servers) as producer:
        sent = [producer.send(tp.topic, key=k, value=v, headers=h, timestamp_ms=ts, partition=0).get(30)
                for k, v, h, ts in RECORDS]
    assert [m.offset for m in sent] == list(range(len(RECORDS)))

    with _consumer(bootstrap_servers) as consumer:
        got = _read_all(consumer, tp)

    assert [r.offset for r in got] == list(range(len(RECORDS)))
    for rec, (key, value, headers, ts) in zip(got, RECORDS, strict=True):
        assert (rec.key, rec.value, rec.headers, rec.timestamp) == (key, value, headers, ts)
        assert rec.timestamp_type == 0  # CreateTime: the producer's timestamp is kept
        # -1 is how the wire says "null"; an empty key/value has size 0.
        assert rec.serialized_key_size == (-1 if key is None else len(key))
        assert rec.serialized_value_size == (-1 if value is None else len(value))


def test_kafka_python_producer_refuses_what_the_protocol_allows(bootstrap_servers: str, admin: Any) -> None:
    """Record format v2 allows a null header value and null key+value; KafkaProducer.send refuses both.

    A restore that must reproduce such records (written by other clients) cannot use send().
    """
    tp = _create(admin, _topic("limits"))
    with _producer(bootstrap_servers) as producer:
        with pytest.raises(TypeError):
            producer.send(tp.topic, key=b"k", value=b"v", headers=[("n", None)], partition=0)
        with pytest.raises(ValueError):
            producer.send(tp.topic, key=None, value=None, partition=0)


def test_one_mib_record(bootstrap_servers: str, admin: Any) -> None:
    """A 1 MiB value passes: its batch exceeds Kafka's default message.max.bytes (1,048,588), which
    dev/kafka.py raises; the clients need their own limits raised too."""
    tp = _create(admin, _topic("big"))
    value = bytes(range(256)) * 4096  # exactly 1 MiB
    with _producer(bootstrap_servers, max_request_size=2 << 20, compression_type=None) as producer:
        producer.send(tp.topic, key=b"big", value=value, partition=0).get(30)
    with _consumer(bootstrap_servers, max_partition_fetch_bytes=2 << 20) as consumer:
        got = _read_all(consumer, tp)
    assert [(r.key, r.value) for r in got] == [(b"big", value)]


def test_transactions_leave_offset_gaps(bootstrap_servers: str, admin: Any) -> None:
    tp = _create(admin, _topic("txn"))
    with _producer(bootstrap_servers, transactional_id=f"it-txn-{uuid.uuid4().hex}") as producer:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(2):
            producer.send(tp.topic, key=b"c1", value=f"committed-{i}".encode(), partition=0)
        producer.commit_transaction()  # offsets 0, 1; commit marker at 2
        producer.begin_transaction()
        for i in range(2):
            producer.send(tp.topic, key=b"a", value=f"aborted-{i}".encode(), partition=0)
        producer.flush()
        producer.abort_transaction()  # offsets 3, 4; abort marker at 5
        producer.begin_transaction()
        producer.send(tp.topic, key=b"c2", value=b"committed-2", partition=0)
        producer.commit_transaction()  # offset 6; commit marker at 7

    with _consumer(bootstrap_servers, isolation_level="read_committed") as consumer:
        committed = _read_all(consumer, tp)
        lso = consumer.end_offsets([tp])[tp]
        assert consumer.position(tp) == lso
    assert [(r.offset, r.value) for r in committed] == [
        (0, b"committed-0"), (1, b"committed-1"), (6, b"committed-2")]
    assert lso == 8  # the last stable offset lies past the final commit marker

    with _consumer(bootstrap_servers, isolation_level="read_uncommitted") as consumer:
        everything = _read_all(consumer, tp)
        assert consumer.end_offsets([tp])[tp] == 8
    # Aborted records are visible uncommitted; control markers (2, 5, 7) never are.
    assert [r.offset for r in everything] == [0, 1, 3, 4, 6]


def test_compaction_leaves_offset_holes(bootstrap_servers: str, admin: Any) -> None:
    """Older values of a key are removed by the cleaner, leaving missing offsets behind.

    The cleaner never touches the active segment, so segment.ms is tiny and each loop turn appends
    a filler record, which rolls the segment holding the overwrites.
    """
    tp = _create(admin, _topic("compact"), {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "60000",  # keep tombstones during the test
    })
    keys = [f"k{i}".encode() for i in range(5)]
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    with _producer(bootstrap_servers) as producer:
        for version in range(3):
            for key in keys:
                value = None if (key == b"k4" and version == 2) else f"{key.decode()}-v{version}".encode()
                meta = producer.send(tp.topic, key=key, value=value, partition=0).get(30)
                latest[key] = (meta.offset, value)
        written = len(keys) * 3  # offsets 0..14

        with _consumer(bootstrap_servers) as consumer:
            deadline = time.monotonic() + 60
            while True:
                time.sleep(0.3)
                producer.send(tp.topic, key=b"filler", value=b"x", partition=0).get(30)
                got = [r for r in _read_all(consumer, tp) if r.offset < written]
                if len(got) == len(keys):
                    break
                assert time.monotonic() < deadline, f"not compacted after 60 s: {[r.offset for r in got]}"

    assert {r.key: (r.offset, r.value) for r in got} == latest
    assert [r.offset for r in got] == list(range(written - len(keys), written))  # 0..9 are holes


def test_delete_records_moves_log_start(bootstrap_servers: str, admin: Any) -> None:
    tp = _create(admin, _topic("delrec"))
    with _producer(bootstrap_servers) as producer:
        for i in range(10):
            producer.send(tp.topic, value=str(i).encode(), partition=0)
        producer.flush()

    result = admin.delete_records({tp: 6})
    assert result[tp]["low_watermark"] == 6

    with _consumer(bootstrap_servers) as consumer:
        assert consumer.beginning_offsets([tp]) == {tp: 6}
        assert consumer.end_offsets([tp]) == {tp: 10}
        got = _read_all(consumer, tp)
    assert [(r.offset, r.value) for r in got] == [(i, str(i).encode()) for i in range(6, 10)]
