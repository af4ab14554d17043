"""The commit chain on an in-memory store: keys, probing, races, hints and orphans."""

from __future__ import annotations

import threading
import uuid

import pytest
from kafka_backup.catalog import (
    CommitRecord,
    Head,
    PartitionChain,
    decode_topic,
    encode_topic,
    list_partitions,
    list_topics,
)
from kafka_backup.errors import CorruptSegmentError
from kafka_backup.storage import Store, open_store


def _store() -> Store:
    return open_store(f"memory://{uuid.uuid4().hex}")


def _rec(start: int, end: int, run: str = "r1", kind: str = "segment") -> CommitRecord:
    return CommitRecord(kind=kind, topic="t", partition=0, start=start, end=end, run_id=run,  # type: ignore[arg-type]
                        committed_at="2026-01-01T00:00:00Z",
                        segment=f"segments/{start:020d}-{end:020d}-{run}.kbseg" if kind == "segment" else None)


@pytest.mark.parametrize("topic", ["orders", "a.b-c_d", "ünïcödé", "has space/slash", ".", "..", "%41"])
def test_topic_encoding_is_reversible_and_key_safe(topic: str) -> None:
    enc = encode_topic(topic)
    assert decode_topic(enc) == topic
    assert "/" not in enc and enc not in {".", ".."}


def test_offsets_sort_as_keys() -> None:
    chain = PartitionChain(_store(), "t", 0)
    keys = [chain.commit_key(o) for o in (0, 9, 10, 1_000_000, 2**62)]
    assert keys == sorted(keys)


def test_find_end_follows_the_chain_past_a_stale_hint() -> None:
    chain = PartitionChain(_store(), "t", 0)
    assert chain.find_end() is None
    for a, b in [(5, 10), (10, 20), (20, 21)]:
        assert chain.try_commit(_rec(a, b))
    assert chain.find_end() == 21  # no hint: one listing, then probe
    chain.write_head(Head(10, 10))
    assert chain.find_end() == 21  # a stale hint is only a head start
    assert [(r.start, r.end) for r in chain.walk()] == [(5, 10), (10, 20), (20, 21)]


def test_damaged_hint_falls_back_to_listing() -> None:
    chain = PartitionChain(_store(), "t", 0)
    chain.try_commit(_rec(0, 7))
    chain.store.put(chain.head_key, b"{not json")
    assert chain.find_end() == 7


def test_exactly_one_of_many_concurrent_commits_wins() -> None:
    chain = PartitionChain(_store(), "t", 0)
    wins: list[str] = []
    barrier = threading.Barrier(16)

    def attempt(i: int) -> None:
        barrier.wait()
        if chain.try_commit(_rec(0, 10 + i, run=f"r{i}")):
            wins.append(f"r{i}")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    rec = chain.read_commit(0)
    assert rec is not None and rec.run_id == wins[0]


def test_gap_records_are_links_of_the_chain() -> None:
    chain = PartitionChain(_store(), "t", 0)
    chain.try_commit(_rec(0, 10))
    chain.try_commit(_rec(10, 50, kind="gap"))
    chain.try_commit(_rec(50, 60))
    assert chain.find_end() == 60
    assert [r.gap_count for r in chain.walk()] == [0, 40, 0]


def test_corrupt_commit_record_is_named() -> None:
    chain = PartitionChain(_store(), "t", 0)
    chain.store.put(chain.commit_key(0), b'{"format_version": 1, "kind": "segment"')
    with pytest.raises(CorruptSegmentError, match=r"commits/00000000000000000000\.json"):
        chain.find_end()


def test_uncommitted_segments_are_orphans() -> None:
    store = _store()
    chain = PartitionChain(store, "t", 0)
    chain.try_commit(_rec(0, 10))
    store.put(f"{chain.base}/segments/{0:020d}-{10:020d}-r1.kbseg", b"committed")
    store.put(f"{chain.base}/segments/{0:020d}-{12:020d}-r2.kbseg", b"lost race, crashed")
    store.put(f"{chain.base}/segments/{10:020d}-{15:020d}-r3.kbseg", b"crashed before commit")
    orphans = sorted(k.rsplit("/", 1)[1] for k, *_ in chain.uncommitted_segments(0))
    assert orphans == [f"{0:020d}-{12:020d}-r2.kbseg", f"{10:020d}-{15:020d}-r3.kbseg"]
    assert [k for k, *_ in chain.uncommitted_segments(10)] == [f"{chain.base}/segments/{10:020d}-{15:020d}-r3.kbseg"]


def test_listing_topics_and_partitions() -> None:
    store = _store()
    for topic, part in [("a.b", 0), ("a.b", 3), ("weird name", 1)]:
        PartitionChain(store, topic, part).try_commit(
            CommitRecord(kind="gap", topic=topic, partition=part, start=0, end=1, run_id="r",
                         committed_at="x"))
    assert list_topics(store) == ["a.b", "weird name"]
    assert list_partitions(store, "a.b") == [0, 3]
