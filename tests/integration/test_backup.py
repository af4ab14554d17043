"""The backup protocol against the real broker: fidelity, bounds, races, gaps and budgets."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka_backup.backup import BackupRun, run_backup
from kafka_backup.catalog import PartitionChain
from kafka_backup.report import summarize, verify
from kafka_backup.storage import open_store

from tests.integration.conftest import backed_up_rows, chain_ranges, consume_all, settings, wait_for

pytestmark = pytest.mark.integration

HARD = [
    (b"k1", b"v1", [("h", b"\x00\x01"), ("h", b"\xff"), ("e", b"")], 1_600_000_000_000),
    (None, b"no key", [], 1_600_000_000_001),
    (b"", b"", [], 1_600_000_000_002),
    (b"k1", None, [("why", b"tombstone")], 1_600_000_000_003),
    (b"", None, [("h", b"")], 1_500_000_000_000),
    (b"\x00bin\xff", bytes(range(256)), [("\u00e9t\u00e9", b"utf8 key"), ("h", b"1"), ("h", b"1")], 1_600_000_000_004),
]


def _url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'backup'}"


def _produce_hard(bootstrap: str, topic: str, partitions: int) -> None:
    for codec in (None, "gzip", "lz4", "zstd"):
        with KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=5,
                           max_request_size=4 << 20) as p:
            for part in range(partitions):
                for key, value, headers, ts in HARD:
                    p.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts, partition=part)
            p.flush()
    with KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topic}") as tx:
        tx.init_transactions()
        for commit in (True, False, True):
            tx.begin_transaction()
            for part in range(partitions):
                tx.send(topic, key=b"tx", value=b"committed" if commit else b"aborted", partition=part)
            tx.flush()  # so aborted records really reach the log before the abort
            tx.commit_transaction() if commit else tx.abort_transaction()


def _backup_until_complete(bootstrap: str, url: str, topics: list[str], **backup: Any) -> None:
    """Run until every partition reached its snapshot (markers land asynchronously after a commit)."""
    for _ in range(10):
        result = run_backup(settings(bootstrap, url, topics, **backup))
        assert result.ok, result.errors
        if result.records == 0 and result.lag == 0:
            return
    raise AssertionError("backup never caught up")


def test_hard_cases_round_trip_exactly(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                       producer: KafkaProducer) -> None:
    plain = make_topic(3)
    log_append = make_topic(1, {"message.timestamp.type": "LogAppendTime"})
    small = make_topic(24)
    _produce_hard(bootstrap_servers, plain, 3)
    _produce_hard(bootstrap_servers, log_append, 1)
    big = bytes(range(256)) * 4000  # ~1 MiB record
    producer.send(plain, key=b"big", value=big, partition=1).get(30)
    for part in range(24):
        producer.send(small, key=str(part).encode(), value=b"x" * part, partition=part)
    producer.flush()
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [plain, log_append, small], segment_max_bytes=64 << 10)
    store = open_store(url)
    for topic, parts in ((plain, 3), (log_append, 1), (small, 24)):
        for part in range(parts):
            expected = consume_all(bootstrap_servers, topic, part)
            assert expected, f"{topic}[{part}] is empty"
            assert backed_up_rows(store, topic, part) == expected, f"{topic}[{part}]"
    la = backed_up_rows(store, log_append, 0)
    assert {r[2] for r in la} == {1}, "LogAppendTime kept"
    assert any(r[4] == big for r in backed_up_rows(store, plain, 1))
    rep = verify(store)
    assert rep.ok, rep.problems
    assert rep.gap_offsets == 0


def test_stored_batches_are_the_brokers_bytes(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    from kafka_backup._kafka_raw import RawKafka
    from kafka_backup.segment import SegmentReader

    topic = make_topic(1)
    _produce_hard(bootstrap_servers, topic, 1)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [topic])
    store = open_store(url)
    chain = PartitionChain(store, topic, 0)
    stored = b"".join(
        bytes(raw) for rec in chain.walk() if rec.segment
        for _, raw in SegmentReader.from_bytes(store.get(f"{chain.base}/{rec.segment}"), key="k").batches())
    fetched, pos = b"", 0
    end = chain.find_end()
    with RawKafka(bootstrap_servers=[bootstrap_servers]) as raw:
        while pos < end:
            fp = raw.fetch({(topic, 0): pos})[(topic, 0)]
            from kafka_backup._batches import scan

            hs = list(scan(fp.records))
            fetched += fp.records
            pos = hs[-1].next_offset
    assert stored == fetched


def test_compaction_holes_and_markers_are_not_gaps(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                   producer: KafkaProducer, admin: KafkaAdminClient) -> None:
    topic = make_topic(1, {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
                           "min.compaction.lag.ms": "0", "delete.retention.ms": "600000"})
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5000) as batcher:
        for k in range(4):  # one batch, offsets 0..3; a1 and a3 are superseded below: holes inside it
            batcher.send(topic, key=f"a{k}".encode(), value=b"first", partition=0)
        batcher.flush()
    for version in range(4):
        for k in range(5):
            producer.send(topic, key=f"k{k}".encode(), value=f"v{version}".encode(), partition=0).get(30)
    for k in (1, 3):
        producer.send(topic, key=f"a{k}".encode(), value=b"second", partition=0).get(30)

    def compacted() -> bool:
        producer.send(topic, key=b"filler", value=b"x", partition=0).get(30)
        offsets = {r[0] for r in consume_all(bootstrap_servers, topic, 0)}
        return 0 in offsets and 1 not in offsets and 4 not in offsets

    wait_for(compacted, 90, "compaction")
    # Freeze the log (no more cleaning) so the source can be compared with the backup afterwards.
    from kafka.admin import ConfigResource, ConfigResourceType

    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": "delete"})])
    _produce_hard(bootstrap_servers, topic, 1)  # transaction markers and aborted records too
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [topic])
    store = open_store(url)
    assert backed_up_rows(store, topic, 0) == consume_all(bootstrap_servers, topic, 0)
    assert all(kind == "segment" for kind, _, _ in chain_ranges(store, topic, 0))
    offsets = [r[0] for r in backed_up_rows(store, topic, 0)]
    assert offsets[:2] == [0, 2] and len(offsets) < offsets[-1] + 1, "holes were backed up as holes"
    assert verify(store).gap_offsets == 0
    # Restore sends batches with holes rebuilt (the broker refuses gaps inside a produced batch).
    from kafka_backup.catalog import PartitionChain
    from kafka_backup.restore import RestoreOptions, run_restore
    from kafka_backup.segment import SegmentReader

    chain = PartitionChain(store, topic, 0)
    first = next(r for r in chain.walk() if r.kind == "segment")
    header, _ = next(SegmentReader.from_bytes(store.get(f"{chain.base}/{first.segment}"), key="first").batches())
    assert header.records_count < header.last_offset_delta + 1, "the first stored batch has holes inside it"

    result = run_restore(settings(bootstrap_servers, url, []), RestoreOptions(topic=topic, to_topic=f"{topic}-r"))
    restored = consume_all(bootstrap_servers, f"{topic}-r", 0)
    assert result.records == len(offsets) == len(restored)
    assert [r[1:] for r in restored] == [r[1:] for r in consume_all(bootstrap_servers, topic, 0)]


def test_run_never_reads_past_its_snapshot(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(2)
    stop = threading.Event()
    produced = [0]

    def keep_producing() -> None:
        with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=2) as p:
            while not stop.is_set():
                p.send(topic, value=b"y" * 200)
                produced[0] += 1
                if produced[0] % 500 == 0:
                    p.flush()

    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5) as p:
        for i in range(20000):
            p.send(topic, value=b"x" * 200, partition=i % 2)
    t = threading.Thread(target=keep_producing, daemon=True)
    t.start()
    try:
        wait_for(lambda: produced[0] > 1000, 30, "background producer")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
        tps = [TopicPartition(topic, p) for p in range(2)]
        before = {tp.partition: o.offset for tp, o in admin.list_partition_offsets(
            {tp: -1 for tp in tps}).items()}
        result = run_backup(settings(bootstrap_servers, _url(tmp_path), [topic], segment_max_bytes=256 << 10))
        after = {tp.partition: o.offset for tp, o in admin.list_partition_offsets(
            {tp: -1 for tp in tps}).items()}
        admin.close()
    finally:
        stop.set()
        t.join()
    for p in result.partitions:
        assert p.status == "complete"
        assert p.end_offset == p.target_offset
        assert before[p.partition] <= p.end_offset <= after[p.partition]
        assert after[p.partition] > p.end_offset, "the producer kept going, the run did not follow it"


def test_eight_overlapping_runs_commit_every_offset_once(bootstrap_servers: str, make_topic: Any,
                                                         tmp_path: Path) -> None:
    topic = make_topic(3)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5) as p:
        for i in range(30000):
            p.send(topic, key=str(i).encode(), value=b"v" * 300, partition=i % 3)
    url = _url(tmp_path)
    s = settings(bootstrap_servers, url, [topic], segment_max_bytes=128 << 10)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def one() -> None:
        run = BackupRun(s)
        barrier.wait()
        results.append(run.run())

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r.ok for r in results), [r.errors for r in results]
    assert sum(r.records for r in results) == 30000, "each record committed by exactly one run"
    assert sum(p.conflicts for r in results for p in r.partitions) > 0, "the runs really raced"
    store = open_store(url)
    for part in range(3):
        ranges = chain_ranges(store, topic, part)
        assert ranges[0][1] == 0 and all(a[2] == b[1] for a, b in itertools.pairwise(ranges))
        assert backed_up_rows(store, topic, part) == consume_all(bootstrap_servers, topic, part)
    rep = verify(store)
    assert rep.ok, rep.problems
    assert rep.orphans == [], "losers delete their segments"


def test_retention_gap_is_recorded_exactly(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                           admin: KafkaAdminClient, producer: KafkaProducer) -> None:
    topic = make_topic(1)
    for i in range(100):
        producer.send(topic, value=str(i).encode(), partition=0)
    producer.flush()
    url = _url(tmp_path)
    first = run_backup(settings(bootstrap_servers, url, [topic]))
    assert first.partitions[0].end_offset == 100 and not first.gaps
    for i in range(100, 300):
        producer.send(topic, value=str(i).encode(), partition=0)
    producer.flush()
    admin.delete_records({TopicPartition(topic, 0): 250})
    second = run_backup(settings(bootstrap_servers, url, [topic]))
    assert [(g.start, g.end, g.count) for g in second.gaps] == [(100, 250, 150)]
    assert second.gap_offsets == 150
    assert second.partitions[0].end_offset == 300 and second.records == 50
    store = open_store(url)
    assert chain_ranges(store, topic, 0) == [("segment", 0, 100), ("gap", 100, 250), ("segment", 250, 300)]
    [summary] = summarize(store, [topic])
    assert summary.gap_offsets == 150 and summary.records == 150
    third = run_backup(settings(bootstrap_servers, url, [topic]))
    assert not third.gaps, "a gap is recorded once"


def test_budgets_stop_early_and_the_next_run_resumes_exactly(bootstrap_servers: str, make_topic: Any,
                                                             tmp_path: Path) -> None:
    topic = make_topic(2)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5, batch_size=4096) as p:
        for i in range(10000):
            p.send(topic, value=b"z" * 100, partition=i % 2)
    url = _url(tmp_path)
    runs = 0
    while True:
        r = run_backup(settings(bootstrap_servers, url, [topic], max_records=1500, segment_max_bytes=32 << 10))
        runs += 1
        assert r.ok
        if r.stop_reason == "complete":
            break
        assert r.stop_reason == "max_records" and r.records < 1500 + 2 * 600
        assert runs < 20
    assert runs >= 4
    store = open_store(url)
    for part in range(2):
        assert backed_up_rows(store, topic, part) == consume_all(bootstrap_servers, topic, part)


def test_deadline_is_respected(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(1)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5) as p:
        for _ in range(20000):
            p.send(topic, value=b"d" * 500, partition=0)
    t0 = time.monotonic()
    # Each fetch takes at least 0.1 s (a slow network, simulated in the progress callback), so the
    # 1 s deadline falls in the middle of the partition whatever the machine's speed.
    r = run_backup(settings(bootstrap_servers, _url(tmp_path), [topic], segment_max_bytes=64 << 10,
                            partition_fetch_max_bytes=32 << 10),
                   deadline_s=1.0, progress=lambda *_: time.sleep(0.1))
    assert time.monotonic() - t0 < 2.5
    assert r.stop_reason == "deadline" and r.partitions[0].status == "partial" and r.records > 0
    assert verify(open_store(_url(tmp_path))).ok


def test_new_partitions_and_topics_are_picked_up(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                  admin: KafkaAdminClient, producer: KafkaProducer) -> None:
    from kafka.admin import NewPartitions

    prefix = f"pick{time.time_ns() % 10**8}"
    topic = make_topic(1, prefix=prefix)
    producer.send(topic, value=b"1", partition=0).get(30)
    url = _url(tmp_path)
    s = settings(bootstrap_servers, url, [], topic_patterns=[f"{prefix}-.*"])
    assert [(p.topic, p.partition) for p in run_backup(s).partitions] == [(topic, 0)]
    admin.create_partitions({topic: NewPartitions(total_count=3)})
    other = make_topic(1, prefix=prefix)
    wait_for(lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 3, 30, "new partitions")
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as fresh:  # metadata with 3 partitions
        fresh.send(topic, value=b"2", partition=2).get(30)
    seen = {(p.topic, p.partition) for p in run_backup(s).partitions}
    assert seen == {(topic, 0), (topic, 1), (topic, 2), (other, 0)}


def test_shards_split_partitions_disjointly(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(12)
    url = _url(tmp_path)
    seen: list[tuple[str, int]] = []
    for i in range(3):
        r = run_backup(settings(bootstrap_servers, url, [topic], shard={"index": i, "count": 3}))
        seen += [(p.topic, p.partition) for p in r.partitions]
    assert sorted(seen) == [(topic, p) for p in range(12)]


def test_recreated_topic_is_refused_not_overwritten(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                     admin: KafkaAdminClient, producer: KafkaProducer) -> None:
    topic = make_topic(1)
    for i in range(50):
        producer.send(topic, value=str(i).encode(), partition=0)
    producer.flush()
    url = _url(tmp_path)
    run_backup(settings(bootstrap_servers, url, [topic]))
    admin.delete_topics([topic])
    wait_for(lambda: topic not in admin.list_topics(), 30, "topic deletion")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    producer.send(topic, value=b"new", partition=0).get(30)
    r = run_backup(settings(bootstrap_servers, url, [topic]))
    assert not r.ok and "recreated" in (r.partitions[0].error or "")
    assert chain_ranges(open_store(url), topic, 0) == [("segment", 0, 50)]


def test_transactions_split_across_segments_keep_committed_records(bootstrap_servers: str, make_topic: Any,
                                                                   tmp_path: Path) -> None:
    """One fetch spans many segments: aborted-transaction entries must not leak into later ones."""
    topic = make_topic(1)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"split-{topic}") as tx:
        tx.init_transactions()
        for i in range(40):
            tx.begin_transaction()
            for j in range(20):
                tx.send(topic, key=f"{i}".encode(), value=f"{i}-{j}".encode() * 40, partition=0)
            tx.flush()
            tx.commit_transaction() if i % 3 else tx.abort_transaction()
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [topic], segment_max_bytes=4 << 10)
    store = open_store(url)
    assert len(chain_ranges(store, topic, 0)) > 10
    expected = consume_all(bootstrap_servers, topic, 0)
    assert len(expected) == 26 * 20
    assert backed_up_rows(store, topic, 0) == expected


def test_start_latest_is_anchored_by_the_first_run(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                   producer: KafkaProducer) -> None:
    topic = make_topic(1)
    for i in range(10):
        producer.send(topic, value=f"old-{i}".encode(), partition=0)
    producer.flush()
    url = _url(tmp_path)
    first = run_backup(settings(bootstrap_servers, url, [topic], start="latest"))
    assert first.records == 0 and first.partitions[0].end_offset == 10
    store = open_store(url)
    assert not store.exists(PartitionChain(store, topic, 0).head_key), "the hint never names an uncommitted end"
    for i in range(5):
        producer.send(topic, value=f"new-{i}".encode(), partition=0)
    producer.flush()
    second = run_backup(settings(bootstrap_servers, url, [topic], start="latest"))
    assert second.records == 5
    assert [r[4] for r in backed_up_rows(store, topic, 0)] == [f"new-{i}".encode() for i in range(5)]
