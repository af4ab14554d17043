"""RawKafka against a real broker: raw batches decode to exactly what was produced.

Why against a real broker: the whole point of :mod:`kafka_backup._kafka_raw` is to reproduce what
the broker sends (partial trailing batches, compressed batches starting before the fetch offset,
aborted-transaction lists, the last stable offset, OFFSET_OUT_OF_RANGE after delete_records);
only a broker can show those.  Each test uses its own topic, so tests are independent.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kafka
import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.record import MemoryRecords
from kafka_backup import _kafka_raw
from kafka_backup._batches import BatchHeader, scan
from kafka_backup._kafka_raw import FetchedPartition, RawKafka, check_internals
from kafka_backup.errors import IncompatibleKafkaError, KafkaAuthError, KafkaClientError

pytestmark = pytest.mark.integration

Produced = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]


@pytest.fixture(scope="module")
def admin(bootstrap_servers: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="test-kafka-raw-admin")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def raw(bootstrap_servers: str) -> Iterator[RawKafka]:
    with RawKafka(bootstrap_servers=bootstrap_servers, client_id="test-kafka-raw") as client:
        yield client


def new_topic(admin: KafkaAdminClient, partitions: int = 1, **configs: str) -> str:
    name = f"raw-{uuid.uuid4().hex[:12]}"
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}},
                        wait_for_metadata=True)
    return name


def produce(bootstrap_servers: str, topic: str, n: int, *, compression: str | None = None,
            partition: int = 0, seed: int = 1, **producer_kwargs: Any) -> list[Produced]:
    """Send ``n`` varied records (null/empty keys, headers, compressible and random values)."""
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, compression_type=compression,
                             linger_ms=producer_kwargs.pop("linger_ms", 20), **producer_kwargs)
    try:
        sent = []
        for i in range(n):
            key = None if i % 7 == 0 else (b"" if i % 11 == 0 else f"key-{i}".encode())
            size = rng.randrange(0, 1200)
            value = None if i % 13 == 0 and key is not None else (
                rng.randbytes(size) if i % 3 == 0 else (f"value {i} " * 200).encode()[:size])
            headers = [("h", f"{i}".encode()), ("empty", b"")] if i % 5 == 0 else []
            sent.append((key, value, tuple(headers),
                         producer.send(topic, key=key, value=value, headers=headers, partition=partition)))
        producer.flush(timeout=60)
        return [(f.get(timeout=60).offset, k, v, h) for k, v, h, f in sent]
    finally:
        producer.close()


def decode(records: bytes) -> list[Produced]:
    """Decode raw batches with kafka-python's record reader (data batches only)."""
    out: list[Produced] = []
    memory = MemoryRecords(records)
    while (batch := memory.next_batch()) is not None:
        if batch.is_control_batch:
            continue
        out.extend((r.offset, r.key, r.value, tuple(r.headers)) for r in batch)
    return out


def fetch_all(raw: RawKafka, topic: str, partition: int = 0, start: int = 0, **kw: Any,
              ) -> tuple[list[FetchedPartition], list[BatchHeader], int]:
    """Loop fetch from ``start`` until the last stable offset; return results, headers, end offset."""
    offset, results, headers = start, [], []
    for _ in range(100_000):
        result = raw.fetch({(topic, partition): offset}, max_wait_ms=50, **kw)[(topic, partition)]
        assert not result.out_of_range
        results.append(result)
        batch_headers = list(scan(result.records))  # CRC-32C of every batch is checked here
        headers.extend(batch_headers)
        if batch_headers:
            assert batch_headers[0].base_offset <= offset < batch_headers[0].next_offset or (
                batch_headers[0].base_offset > offset)
            offset = batch_headers[-1].next_offset
        if offset >= result.last_stable_offset:
            return results, headers, offset
        assert batch_headers, f"no progress at {offset} below LSO {result.last_stable_offset}"
    raise AssertionError("fetch loop did not reach the last stable offset")


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd"])
def test_raw_batches_decode_to_produced_records(raw: RawKafka, admin: KafkaAdminClient,
                                                bootstrap_servers: str, compression: str | None) -> None:
    topic = new_topic(admin)
    produced = produce(bootstrap_servers, topic, 3000, compression=compression)
    assert [p[0] for p in produced] == list(range(3000))

    # Small limits: several batches per response, the last one usually cut by the broker.
    results, headers, end = fetch_all(raw, topic, max_bytes=30_000, partition_max_bytes=25_000)
    assert end == 3000 == results[-1].high_watermark == results[-1].last_stable_offset
    assert results[-1].log_start_offset == 0
    offsets = [o for r in results for o, *_ in decode(r.records)]
    assert offsets == list(range(3000)), "every offset exactly once, in order"
    assert [rec for r in results for rec in decode(r.records)] == produced
    assert len(headers) > 10 and all(h.records_count > 0 for h in headers)
    expected_codec = {None: 0, "gzip": 1, "lz4": 3, "zstd": 4}[compression]
    assert {h.compression for h in headers} == {expected_codec}
    assert max(len(r.records) for r in results) <= max(25_000, max(h.size for h in headers))

    # At the high watermark: nothing, and not out of range.
    last = raw.fetch({(topic, 0): end}, max_wait_ms=10)[(topic, 0)]
    assert (last.records, last.out_of_range, last.high_watermark) == (b"", False, 3000)

    # A limit ending half-way into the second batch: exactly the first batch comes back.
    first, second = headers[0], headers[1]
    cut = raw.fetch({(topic, 0): 0}, partition_max_bytes=first.size + second.size // 2)[(topic, 0)]
    assert [h.base_offset for h in scan(cut.records)] == [first.base_offset]
    assert cut.records == results[0].records[: first.size]


def test_later_partitions_are_not_starved(raw: RawKafka, admin: KafkaAdminClient,
                                           bootstrap_servers: str) -> None:
    """The broker gives a partition nothing when its first batch does not fit in what is left of
    max_bytes; RawKafka rotates the partition order, so each gets its turn on successive calls."""
    topic = new_topic(admin, partitions=2)
    for p in (0, 1):
        produce(bootstrap_servers, topic, 200, partition=p, seed=7, linger_ms=200)
    whole = raw.fetch({(topic, 0): 0})[(topic, 0)]
    b0 = next(scan(whole.records)).size
    got: dict[int, list[int]] = {0: [], 1: []}
    for _ in range(2):
        result = raw.fetch({(topic, 0): 0, (topic, 1): 0}, max_bytes=b0 + b0 // 2, partition_max_bytes=b0)
        for p in (0, 1):
            got[p].append(len(list(scan(result[(topic, p)].records))))
    assert sorted(got[0]) == sorted(got[1]) == [0, 1], got


def test_transactions_aborted_list_lso_and_control_batches(raw: RawKafka, admin: KafkaAdminClient,
                                                           bootstrap_servers: str) -> None:
    topic = new_topic(admin)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers,
                             transactional_id=f"raw-txn-{uuid.uuid4().hex[:8]}")
    try:
        producer.init_transactions()
        offsets: dict[str, list[int]] = {}
        for label, n, commit in (("committed", 5, True), ("aborted", 4, False), ("committed2", 3, True)):
            producer.begin_transaction()
            futures = [producer.send(topic, value=f"{label}-{i}".encode(), partition=0) for i in range(n)]
            producer.flush()
            offsets[label] = [f.get(timeout=30).offset for f in futures]
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()

        # The coordinator writes commit/abort markers after EndTxn returns: wait for the last one.
        last_marker = offsets["committed2"][-1] + 1
        deadline = time.monotonic() + 30
        while raw.fetch({(topic, 0): 0}, max_wait_ms=10)[(topic, 0)].last_stable_offset <= last_marker:
            assert time.monotonic() < deadline, "the last commit marker never landed"
            time.sleep(0.05)
        results, headers, end = fetch_all(raw, topic)
        control = [h for h in headers if h.is_control]
        assert len(control) == 3 and all(h.is_transactional for h in headers)
        markers = []
        for r in results:
            memory = MemoryRecords(r.records)
            while (batch := memory.next_batch()) is not None:
                if batch.is_control_batch:
                    markers.extend("commit" if rec.commit else "abort" for rec in batch)
        assert markers == ["commit", "abort", "commit"]
        producer_ids = {h.producer_id for h in headers}
        assert len(producer_ids) == 1
        pid = producer_ids.pop()
        aborted = {a for r in results for a in r.aborted_transactions}
        assert aborted == {(pid, offsets["aborted"][0])}
        # Raw bytes keep the aborted records too: the backup stores them, restore filters them.
        data = [rec for r in results for rec in decode(r.records)]
        assert [o for o, *_ in data] == offsets["committed"] + offsets["aborted"] + offsets["committed2"]
        assert end == results[-1].high_watermark == results[-1].last_stable_offset == control[-1].next_offset

        # An open transaction holds the last stable offset at its first record.
        producer.begin_transaction()
        futures = [producer.send(topic, value=b"open", partition=0) for _ in range(2)]
        producer.flush()
        open_offsets = [f.get(timeout=30).offset for f in futures]
        pending = raw.fetch({(topic, 0): end}, max_wait_ms=10)[(topic, 0)]
        assert pending.last_stable_offset == open_offsets[0] == end
        assert pending.high_watermark == open_offsets[-1] + 1
        assert pending.records == b"", "read_committed stops at the last stable offset"
        producer.commit_transaction()
        after = raw.fetch({(topic, 0): end}, max_wait_ms=10)[(topic, 0)]
        assert [o for o, *_ in decode(after.records)] == open_offsets
        assert after.last_stable_offset == after.high_watermark == open_offsets[-1] + 2
    finally:
        producer.close()


def test_offset_below_log_start_is_out_of_range(raw: RawKafka, admin: KafkaAdminClient,
                                                bootstrap_servers: str) -> None:
    topic = new_topic(admin)
    produce(bootstrap_servers, topic, 50, linger_ms=0)
    admin.delete_records({TopicPartition(topic, 0): 20})
    gone = raw.fetch({(topic, 0): 3})[(topic, 0)]
    assert gone.out_of_range and gone.records == b"" and gone.fetch_offset == 3
    ok = raw.fetch({(topic, 0): 20})[(topic, 0)]
    assert not ok.out_of_range and ok.log_start_offset == 20 and ok.high_watermark == 50
    # The batch holding offset 20 comes back whole, so it may start below the log start offset.
    first = next(scan(ok.records))
    assert first.base_offset <= 20 < first.next_offset
    assert [o for o, *_ in decode(ok.records)][-1] == 49
    beyond = raw.fetch({(topic, 0): 51})[(topic, 0)]
    assert beyond.out_of_range


def test_fetch_inside_a_compressed_batch_returns_that_batch(raw: RawKafka, admin: KafkaAdminClient,
                                                            bootstrap_servers: str) -> None:
    topic = new_topic(admin)
    produced = produce(bootstrap_servers, topic, 40, compression="zstd", linger_ms=500)
    produce(bootstrap_servers, topic, 10, compression="zstd", linger_ms=500, seed=2)
    first = next(scan(raw.fetch({(topic, 0): 0})[(topic, 0)].records))
    assert first.records_count > 10, "the producer must have batched the records together"
    middle = first.base_offset + first.records_count // 2
    result = raw.fetch({(topic, 0): middle})[(topic, 0)]
    batches = list(scan(result.records))
    assert batches[0].base_offset == first.base_offset < middle < batches[0].next_offset
    assert [o for o, *_ in decode(result.records)][: first.records_count] == \
        [o for o, *_ in produced[: first.records_count]]
    # From the next batch on, the first one is no longer returned.
    after = list(scan(raw.fetch({(topic, 0): first.next_offset})[(topic, 0)].records))
    assert after[0].base_offset == first.next_offset


def _inject_error_codes(monkeypatch: pytest.MonkeyPatch, codes: list[int]) -> list[int]:
    """Make the next responses carry ``codes`` (one per response) on every partition."""
    seen: list[int] = []
    parse = RawKafka._parse

    def injected(self: RawKafka, response: Any, node_id: int, tps: Any, wanted: Any) -> Any:
        seen.append(response.API_VERSION)
        if codes:
            code = codes.pop(0)
            for topic_data in response.responses:
                for part in topic_data.partitions:
                    part.error_code, part.records = code, b""
        return parse(self, response, node_id, tps, wanted)

    monkeypatch.setattr(RawKafka, "_parse", injected)
    return seen


def test_retriable_errors_refresh_metadata_and_retry(raw: RawKafka, admin: KafkaAdminClient,
                                                     bootstrap_servers: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    topic = new_topic(admin)
    produce(bootstrap_servers, topic, 20)
    expected = raw.fetch({(topic, 0): 0})[(topic, 0)]
    # NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, KAFKA_STORAGE_ERROR, then a connection error.
    seen = _inject_error_codes(monkeypatch, [6, 74, 56])
    send = RawKafka._send
    failures = [_kafka_raw._KafkaFuture().failure(kafka.errors.KafkaConnectionError("injected"))]

    def flaky_send(self: RawKafka, *args: Any) -> Any:
        return failures.pop() if failures and len(seen) == 3 else send(self, *args)

    monkeypatch.setattr(RawKafka, "_send", flaky_send)
    raw._leaders.clear()
    again = raw.fetch({(topic, 0): 0}, timeout_s=20)[(topic, 0)]
    assert again == expected and len(seen) == 4 and not failures
    assert set(seen) == {raw.fetch_version} == {12}, "Fetch v12 against Kafka 4.x"

    seen = _inject_error_codes(monkeypatch, [6] * 1000)
    with pytest.raises(KafkaClientError, match="NOT_LEADER") as info:
        raw.fetch({(topic, 0): 0}, timeout_s=1.0)
    assert (info.value.topic, info.value.partition) == (topic, 0) and len(seen) >= 3


@pytest.mark.parametrize(("code", "error", "text"), [
    (29, KafkaAuthError, "authorization failed"),
    (2, KafkaClientError, "CORRUPT_MESSAGE"),
    (35, IncompatibleKafkaError, "UNSUPPORTED_VERSION"),
    (76, IncompatibleKafkaError, "UNSUPPORTED_COMPRESSION_TYPE"),
])
def test_non_retriable_errors_raise_at_once(raw: RawKafka, admin: KafkaAdminClient,
                                            monkeypatch: pytest.MonkeyPatch, code: int,
                                            error: type[Exception], text: str) -> None:
    topic = new_topic(admin)
    seen = _inject_error_codes(monkeypatch, [code])
    with pytest.raises(error, match=text) as info:
        raw.fetch({(topic, 0): 0}, timeout_s=30)
    assert len(seen) == 1 and type(info.value) is error
    assert info.value.topic == topic and info.value.partition == 0  # type: ignore[attr-defined]


def test_missing_topic_times_out_with_a_named_partition(raw: RawKafka) -> None:
    topic = f"raw-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaClientError) as info:
        raw.fetch({(topic, 0): 0}, timeout_s=1.5)
    assert (info.value.topic, info.value.partition) == (topic, 0)
    assert "UnknownTopicOrPartition" in str(info.value)


def test_unreachable_broker_and_bad_settings() -> None:
    with pytest.raises(KafkaClientError, match="cannot bootstrap"):
        RawKafka(bootstrap_servers="127.0.0.1:1", bootstrap_timeout_ms=1500)
    with pytest.raises(TypeError, match="sasl_plain_pasword"):
        RawKafka(bootstrap_servers="127.0.0.1:1", sasl_plain_pasword="x")


def test_check_internals_passes_on_the_pin_and_fails_loudly_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    check_internals()  # the pinned version: everything we rely on is where we expect it

    monkeypatch.setattr(_kafka_raw, "_checked", False)
    monkeypatch.setattr(kafka, "__version__", "3.0.99")
    with pytest.raises(IncompatibleKafkaError, match="pin must be re-verified"):
        check_internals()
    monkeypatch.setattr(kafka, "__version__", _kafka_raw.PINNED_KAFKA_PYTHON)

    from kafka.net.manager import KafkaConnectionManager
    from kafka.protocol.consumer import FetchResponse

    monkeypatch.delattr(KafkaConnectionManager, "send")
    struct = FetchResponse.FetchableTopicResponse.PartitionData._struct.array_of
    fields = dict(struct.fields)
    del fields["last_stable_offset"]
    monkeypatch.setattr(struct, "_field_map", fields)  # as if the field had been renamed
    with pytest.raises(IncompatibleKafkaError) as info:
        check_internals()
    assert "KafkaConnectionManager.send is missing" in str(info.value)
    assert "PartitionData.last_stable_offset is missing" in str(info.value)
