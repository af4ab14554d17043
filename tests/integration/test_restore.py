"""The restore engine against the real broker: fidelity, point-in-time, partition maps, topic
creation, kill -9 resumability, consumer-group translation, dry runs and the CLI.

Every test backs its own topics up into a ``file://`` store under ``tmp_path`` and restores into
topics the restore creates (named ``<source>-r...``) or that the test created itself.  Restored
records are always compared with the source as a read_committed Kafka consumer returns it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import OffsetAndMetadata
from kafka_backup.errors import KafkaBackupError, RestoreError
from kafka_backup.restore import RestoreOptions, RestoreResult, run_restore
from kafka_backup.storage import open_store

from tests.integration.conftest import Row, consume_all, settings, wait_for
from tests.integration.test_backup import _backup_until_complete, _produce_hard

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------ helpers
def _url(tmp_path: Path, name: str = "backup") -> str:
    return f"file://{tmp_path / name}"


def _restore(bootstrap: str, url: str, topic: str, **opts: Any) -> RestoreResult:
    return run_restore(settings(bootstrap, url, []), RestoreOptions(topic=topic, **opts))


def _content(rows: list[Row]) -> list[tuple[Any, ...]]:
    """Everything a record carries except its offset: (timestamp, type, key, value, headers)."""
    return [r[1:] for r in rows]


def _data(rows: list[Row]) -> list[tuple[Any, ...]]:
    """(key, value, headers): what survives even when the broker assigns the timestamps."""
    return [r[3:] for r in rows]


def _ends(admin: KafkaAdminClient, topic: str, partitions: int) -> list[int]:
    res = admin.list_partition_offsets({TopicPartition(topic, p): -1 for p in range(partitions)})
    return [res[TopicPartition(topic, p)].offset for p in range(partitions)]


def _store_keys(url: str) -> set[str]:
    return {i.key for i in open_store(url).list()}


def _progress(tmp_path: Path, target: str, partition: int) -> dict[str, Any] | None:
    """The restore's progress record (its checkpoint) for one source partition, if written yet."""
    found = list((tmp_path / "backup" / "restores").glob(f"*/*/{partition}.json"))
    found = [f for f in found if json.loads(f.read_text()).get("target_topic") == target]
    return json.loads(found[0].read_text()) if found else None


def _topic_exists(admin: KafkaAdminClient, topic: str) -> bool:
    return topic in admin.list_topics()


def _recreate_empty(admin: KafkaAdminClient, topic: str, partitions: int) -> None:
    """Delete a topic this test created and create it again, empty (a 'recreated target')."""
    admin.delete_topics([topic])
    wait_for(lambda: not _topic_exists(admin, topic), 30, "topic deletion")
    deadline = time.monotonic() + 30
    while True:  # the name can stay reserved for a moment after the deletion is visible
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1,
                                         "configs": {"retention.ms": "-1"}}}, wait_for_metadata=True)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _set_group_offsets(admin: KafkaAdminClient, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for an empty group (retrying while a fresh broker creates __consumer_offsets)."""
    from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError

    deadline = time.monotonic() + 30
    while True:
        try:
            res = admin.alter_group_offsets(group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            break
        except (CoordinatorNotAvailableError, NotCoordinatorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert all(getattr(err, "errno", 0) == 0 for err in res.values()), res


def _produce_timed(bootstrap: str, topic: str, records: list[tuple[bytes, int]]) -> None:
    """(value, timestamp) records into partition 0, flushed every 10 so batches stay small."""
    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50) as p:
        for i, (value, ts) in enumerate(records):
            p.send(topic, key=b"k%d" % i, value=value, headers=[("i", b"%d" % i)], timestamp_ms=ts, partition=0)
            if i % 10 == 9:
                p.flush()


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kafka_backup.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


# ------------------------------------------------------------------------------- 1. full fidelity
def test_restore_reproduces_every_field(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                        producer: KafkaProducer, admin: KafkaAdminClient) -> None:
    plain = make_topic(3)
    log_append = make_topic(1, {"message.timestamp.type": "LogAppendTime"})
    _produce_hard(bootstrap_servers, plain, 3)
    _produce_hard(bootstrap_servers, log_append, 1)
    big = bytes(range(256)) * 4000  # ~1 MiB record (just under the broker's default max.message.bytes)
    producer.send(plain, key=b"big", value=big, headers=[("h", b"\x00")], partition=1).get(30)
    producer.send(plain, key=b"after-big", value=b"", partition=1).get(30)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [plain, log_append], segment_max_bytes=64 << 10)

    t0 = int(time.time() * 1000)
    res = _restore(bootstrap_servers, url, plain, to_topic=f"{plain}-r")
    res_la = _restore(bootstrap_servers, url, log_append, to_topic=f"{log_append}-r")
    t1 = int(time.time() * 1000)
    assert res.created_topic and res_la.created_topic and res.ok and res_la.ok

    for part in range(3):
        src = consume_all(bootstrap_servers, plain, part)
        dst = consume_all(bootstrap_servers, f"{plain}-r", part)
        assert res.partitions[part].records == len(src) > 0
        assert [r[0] for r in dst] == list(range(len(src))), "contiguous offsets in one transaction, nothing aborted"
        # Everything but the offset is identical: key, value (None vs b""), header order/duplicates/bytes,
        # CreateTime timestamps and their type.
        assert _content(dst) == _content(src), f"partition {part}"
        assert {r[2] for r in dst} == {0}
        # The target log holds no aborted record and no control batch at all.
        assert consume_all(bootstrap_servers, f"{plain}-r", part, isolation="read_uncommitted") == dst
        values = [r[4] for r in dst]
        assert b"aborted" not in values and values.count(b"committed") == 2
        assert None in values and b"" in values, "tombstones and empty values both survive"
        assert None in [r[3] for r in dst] and b"" in [r[3] for r in dst], "null and empty keys both survive"
    assert any(r[4] == big and r[5] == (("h", b"\x00"),) for r in consume_all(bootstrap_servers, f"{plain}-r", 1))

    # LogAppendTime: the target is created with the source's configs, so it is LogAppendTime too and
    # the broker replaces the timestamps the restore sends by its own append time.  Everything else
    # is preserved; the original (source append) times are NOT reproduced.
    src = consume_all(bootstrap_servers, log_append, 0)
    dst = consume_all(bootstrap_servers, f"{log_append}-r", 0)
    assert _data(dst) == _data(src)
    assert {r[2] for r in src} == {1} and {r[2] for r in dst} == {1}
    assert all(t0 <= r[1] <= t1 for r in dst), "broker-assigned at restore time"
    assert all(r[1] < t0 for r in src)
    cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"{log_append}-r")])
    assert _topic_config(cfg, f"{log_append}-r")["message.timestamp.type"] == "LogAppendTime"


def _topic_config(described: Any, topic: str) -> dict[str, str]:
    by_topic = next(v for k, v in described.items() if str(k).lower() == "topic")
    return {k: v.get("value") for k, v in by_topic[topic].items()}


# ---------------------------------------------------------------------------- 2. point in time
BASE = 1_700_000_000_000


def _oft(bootstrap: str, topic: str, ts: int | None) -> int:
    """The broker's answer for offsets_for_times (the partition end when no record qualifies)."""
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        end = c.end_offsets([tp])[tp]
        if ts is None:
            return end
        found = c.offsets_for_times({tp: ts})[tp]
        return end if found is None else found.offset
    finally:
        c.close()


def test_point_in_time_by_offset_and_by_time(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(1)
    # offsets 0..99: ascending timestamps BASE, BASE+10, ...
    _produce_timed(bootstrap_servers, topic, [(b"a%d" % i, BASE + 10 * i) for i in range(100)])
    # offsets 100..129: the hard corpus (old explicit timestamps, then committed/aborted transactions
    # stamped "now"), so ranges cross markers and aborted records
    _produce_hard(bootstrap_servers, topic, 1)
    # then 100 records OLDER than everything above: timestamps are not monotonic in offset order
    _produce_timed(bootstrap_servers, topic, [(b"b%d" % i, BASE - 5_000 + i) for i in range(100)])
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [topic], segment_max_bytes=1 << 10)
    src = consume_all(bootstrap_servers, topic, 0)
    end = _oft(bootstrap_servers, topic, None)
    assert end == 230 and len(src) == 226
    by_offset = {r[0]: r for r in src}
    assert 126 not in by_offset and 127 not in by_offset, "126 aborted, 127 its marker"

    def check(name: str, lo: int, hi: int, **opts: Any) -> None:
        target = f"{topic}-r{name}"
        res = _restore(bootstrap_servers, url, topic, to_topic=target, **opts)
        expected = [r for r in src if lo <= r[0] < hi]
        got = consume_all(bootstrap_servers, target, 0)
        assert _content(got) == _content(expected), f"{opts}: expected source offsets [{lo}, {hi})"
        assert res.records == len(expected)
        if expected:
            assert (res.partitions[0].first_source_offset, res.partitions[0].last_source_offset) == \
                (expected[0][0], expected[-1][0])

    # by offset: [from, to)
    check("o1", 5, 17, from_offset=5, to_offset=17)
    check("o2", 95, 135, from_offset=95, to_offset=135)  # crosses committed/aborted txns and markers
    check("o3", 126, end, from_offset=126)  # starts on an aborted record
    check("o4", 0, 27, to_offset=27)  # ends on a marker

    # by time, like offsets_for_times: [first ts >= from, first ts >= to)
    now = int(time.time() * 1000)
    cases = [
        ("t1", BASE + 500, None),  # from offset 50 to the end, including the older records at 100..229
        ("t2", BASE + 200, BASE + 700),  # [20, 70)
        ("t3", None, BASE + 300),  # [0, 30)
        ("t4", BASE + 955, now + 3_600_000),  # [96, end): no record at/after to_time
        ("t5", BASE + 950, BASE + 10_000_000),  # [95, first txn record stamped now)
    ]
    for name, frm, to in cases:
        lo = 0 if frm is None else _oft(bootstrap_servers, topic, frm)
        hi = _oft(bootstrap_servers, topic, to)
        # the broker's answers are the documented rule applied to the records
        first = [r[0] for r in src if frm is not None and r[1] >= frm]
        assert lo == (first[0] if frm is not None else 0)
        check(name, lo, hi, from_time=frm, to_time=to)
    assert _oft(bootstrap_servers, topic, BASE + 500) == 50


# ------------------------------------------------------------------------------ 3. partition map
def test_partition_map_into_existing_topic(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                           admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    _produce_hard(bootstrap_servers, source, 2)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    target = make_topic(3)
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:  # the target already holds 3 records in [0]
        for i in range(3):
            p.send(target, value=b"pre%d" % i, partition=0)
    res = _restore(bootstrap_servers, url, source, to_topic=target, partition_map={0: 2, 1: 0})
    assert not res.created_topic
    assert [(p.source_partition, p.target_partition, p.target_start) for p in res.partitions] == [(0, 2, 0), (1, 0, 3)]
    src0, src1 = consume_all(bootstrap_servers, source, 0), consume_all(bootstrap_servers, source, 1)
    assert _content(consume_all(bootstrap_servers, target, 2)) == _content(src0)
    dst0 = consume_all(bootstrap_servers, target, 0)
    assert [r[4] for r in dst0[:3]] == [b"pre0", b"pre1", b"pre2"], "appended after what was there"
    assert _content(dst0[3:]) == _content(src1)
    assert consume_all(bootstrap_servers, target, 1) == []

    # Too few partitions in an existing target: refused before anything is written.
    small = make_topic(1)
    before = _store_keys(url)
    with pytest.raises(RestoreError, match="has 1 partitions but the restore needs 2; nothing was written"):
        _restore(bootstrap_servers, url, source, to_topic=small)
    with pytest.raises(RestoreError, match="needs 3"):
        _restore(bootstrap_servers, url, source, to_topic=small, partition_map={0: 2})
    assert _ends(admin, small, 1) == [0]
    assert _store_keys(url) == before, "no progress objects either"
    # A map naming a partition without a backup, or two sources into one target, is refused too.
    with pytest.raises(RestoreError, match="no backup"):
        _restore(bootstrap_servers, url, source, to_topic=target, partition_map={5: 0})
    with pytest.raises(RestoreError, match="two source partitions"):
        _restore(bootstrap_servers, url, source, to_topic=target, partition_map={0: 1, 1: 1})


# ----------------------------------------------------------------------- 4. topic creation/configs
def test_created_topic_has_backed_up_partitions_and_configs(bootstrap_servers: str, make_topic: Any,
                                                             tmp_path: Path, admin: KafkaAdminClient) -> None:
    overrides = {"max.message.bytes": "300000", "retention.bytes": "123456789", "compression.type": "lz4",
                 "message.timestamp.type": "CreateTime", "segment.bytes": "10485760"}
    source = make_topic(3, overrides)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=20, batch_size=256 << 10) as p:
        for i in range(30):
            p.send(source, key=b"%d" % i, value=b"x" * 100, partition=i % 3)
        for i in range(6000):  # 6 MB in partition 1: the restore's batches must respect max.message.bytes
            p.send(source, key=b"bulk%d" % i, value=bytes([i % 256]) * 1000, partition=1)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    # only partition 1 is restored, yet the topic gets the backed-up partition count
    res = _restore(bootstrap_servers, url, source, to_topic=f"{source}-r", partition_map={1: 1})
    assert res.created_topic and res.records == 6010
    # a map beyond the backed-up count widens the created topic
    res_wide = _restore(bootstrap_servers, url, source, to_topic=f"{source}-rw", partition_map={0: 5})
    assert res_wide.created_topic

    described = {t["name"]: t for t in admin.describe_topics([f"{source}-r", f"{source}-rw"])}
    assert len(described[f"{source}-r"]["partitions"]) == 3
    assert len(described[f"{source}-rw"]["partitions"]) == 6

    def dynamic(topic: str) -> dict[str, str]:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        by_topic = next(v for k, v in res.items() if str(k).lower() == "topic")
        return {k: v["value"] for k, v in by_topic[topic].items()
                if "DYNAMIC_TOPIC_CONFIG" in str(v.get("config_source"))}

    want = {"retention.ms": "-1", **overrides}
    assert dynamic(source) == want
    assert dynamic(f"{source}-r") == want, "exactly the source's topic-level configs, nothing else"
    assert dynamic(f"{source}-rw") == want
    assert _content(consume_all(bootstrap_servers, f"{source}-r", 1)) == \
        _content(consume_all(bootstrap_servers, source, 1))
    assert _ends(admin, f"{source}-r", 3) == [0, 6010 + 1, 0], "6010 records and the transaction's commit marker"


# ---------------------------------------------------------------------------- 5. kill -9, re-run
PER_PARTITION = 100_000


def test_kill_9_mid_restore_then_rerun_is_exact(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=50, batch_size=512 << 10) as p:
        for i in range(2 * PER_PARTITION):
            p.send(source, key=b"%d" % i, value=b"v%d" % i, partition=i % 2)
    group = f"g-kill-{uuid.uuid4().hex[:8]}"
    _set_group_offsets(admin, group, {TopicPartition(source, 0): 10_000, TopicPartition(source, 1): 60_000})
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    target = f"{source}-r"
    argv = [sys.executable, "-m", "kafka_backup.cli", "restore", "-s", url, "-b", bootstrap_servers,
            "-t", source, "--to-topic", target, "--no-progress", "--json"]

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            # Kill once the first transaction (both partitions, >= 50,000 records) is checkpointed
            # and the second one is under way (its records are in the log, uncommitted).
            first = _progress(tmp_path, target, 0)
            if first and first["restored"] and _ends(admin, target, 2)[0] >= first["target_end"] + 5_000:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()  # (only reached when the wait above timed out)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the restore finished before it could be killed"
    time.sleep(1)
    killed_at = _ends(admin, target, 2)
    # One transaction covers both partitions and ends at the first batch boundary past 50,000 records.
    checkpoints = [_progress(tmp_path, target, p)["restored"] for p in range(2)]
    assert sum(checkpoints) >= 50_000 and all(0 < c < PER_PARTITION for c in checkpoints), checkpoints
    # What a read_committed consumer sees: the checkpointed records, plus those of a transaction that
    # committed just before the kill, before its checkpoint (rare, read back by the re-run).
    visible = [len(consume_all(bootstrap_servers, target, part)) for part in range(2)]
    assert all(v >= c for v, c in zip(visible, checkpoints, strict=True)), (visible, checkpoints)
    assert killed_at[0] > visible[0], "commit markers (and the open transaction's records) lie past the visible records"
    crashed_store = tmp_path / "crashed-copy"
    shutil.copytree(tmp_path / "backup", crashed_store)

    # The re-run also moves a group (which the killed run did not): its offset in partition 0 lies
    # below the checkpoint the re-run resumes from, so it must be translated from the source again.
    rerun = subprocess.run([*argv, "--groups"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    # The killed run's open transaction was aborted by the re-run's InitProducerId; the re-run skips
    # exactly what was committed past the checkpoints and restores the rest.
    for part, p in enumerate(doc["partitions"]):
        assert p["resumed_skip"] == visible[part] - checkpoints[part], (part, p)
        assert p["records"] == PER_PARTITION - visible[part], (part, p)
    source_rows = [consume_all(bootstrap_servers, source, part) for part in range(2)]
    target_rows = [consume_all(bootstrap_servers, target, part) for part in range(2)]
    for part in range(2):
        assert _content(target_rows[part]) == _content(source_rows[part]), f"partition {part}"
    # The group now points at the same logical records: source 10,000 and 60,000 (commit markers
    # shift the target offsets).
    [g] = doc["groups"]
    assert g["committed"]
    committed = admin.list_group_offsets({group: None})[group]
    assert {f"{tp.topic}:{tp.partition}": om.offset for tp, om in committed.items() if tp.topic == target} \
        == g["offsets"]
    for part, source_offset in ((0, 10_000), (1, 60_000)):
        at = g["offsets"][f"{target}:{part}"]
        [row] = [r for r in target_rows[part] if r[0] == at]
        assert row[1:] == source_rows[part][source_offset][1:], f"partition {part}"

    # A re-run of the completed restore changes nothing.
    ends = _ends(admin, target, 2)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["records"] == 0
    assert _ends(admin, target, 2) == ends

    # The target recreated (empty) below the crashed run's checkpoint: the re-run refuses, writes nothing.
    _recreate_empty(admin, target, 2)
    with pytest.raises(RestoreError, match="below the restore checkpoint"):
        _restore(bootstrap_servers, f"file://{crashed_store}", source, to_topic=target)
    assert _ends(admin, target, 2) == [0, 0]


def test_rerun_of_completed_restore_refuses_a_recreated_target(bootstrap_servers: str, make_topic: Any,
                                                               tmp_path: Path, admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:
        for i in range(20):
            p.send(source, value=b"%d" % i, partition=i % 2)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    target = f"{source}-r"
    assert _restore(bootstrap_servers, url, source, to_topic=target).records == 20
    _recreate_empty(admin, target, 2)
    # The progress says "done" for both partitions; the target lost them.  Reporting "already
    # complete" would leave an empty target behind a successful restore.
    with pytest.raises(RestoreError, match="below the restore checkpoint"):
        _restore(bootstrap_servers, url, source, to_topic=target)
    assert _ends(admin, target, 2) == [0, 0]


def test_records_the_target_rejects_fail_the_restore(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                    admin: KafkaAdminClient) -> None:
    source = make_topic(1)
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:
        for i in range(5):
            p.send(source, value=b"new%d" % i, partition=0)
        p.flush()
        p.send(source, value=b"old", timestamp_ms=1_600_000_000_000, partition=0).get(30)
        for i in range(5):
            p.send(source, value=b"late%d" % i, partition=0)
        p.send(source, value=b"B" * 50_000, partition=0)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    # An existing target that refuses timestamps older than a day: the broker rejects the batch.
    target = make_topic(1, {"message.timestamp.before.max.ms": "86400000"})
    with pytest.raises(KafkaBackupError, match=r"(?i)invalid"):
        _restore(bootstrap_servers, url, source, to_topic=target)
    # The open transaction was aborted: nothing of the failed attempt is visible, the target is
    # still a clean prefix (empty), and a re-run tries again (and fails the same way here).
    assert consume_all(bootstrap_servers, target, 0) == []
    with pytest.raises(KafkaBackupError, match=r"(?i)invalid"):
        _restore(bootstrap_servers, url, source, to_topic=target)
    assert consume_all(bootstrap_servers, target, 0) == []

    # A target whose max.message.bytes is below one of the records: the restore says so.
    small = make_topic(1, {"max.message.bytes": "20000"})
    with pytest.raises(RestoreError, match="MessageSizeTooLarge"):
        _restore(bootstrap_servers, url, source, to_topic=small)


# ------------------------------------------------------------------------------ 6. consumer groups
def _group_positions(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, tuple[int, Row | None]]:
    """Where a consumer of ``group`` resumes on each partition: (committed offset, first record or None)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      isolation_level="read_committed", auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = {tp: c.committed(tp) for tp in tps}
        assert all(o is not None for o in committed.values()), f"{group}: no committed offset on {topic}"
        c.assign(tps)
        ends = c.end_offsets(tps)
        out: dict[int, tuple[int, Row | None]] = {}
        for tp in tps:
            assert c.position(tp) == committed[tp], "the group's consumer starts at the committed offset"
            if committed[tp] >= ends[tp]:
                out[tp.partition] = (committed[tp], None)
                c.pause(tp)
        deadline = time.monotonic() + 30
        while len(out) < len(tps) and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                if tp.partition not in out and recs:
                    r = recs[0]
                    out[tp.partition] = (committed[tp], (r.offset, r.timestamp, r.timestamp_type, r.key, r.value,
                                                         tuple(r.headers)))
                    c.pause(tp)
        assert len(out) == len(tps), f"{group}: no record read"
        return out
    finally:
        c.close()


def test_groups_resume_at_the_same_logical_record(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                                  admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    _produce_hard(bootstrap_servers, source, 2)  # per partition: 0..23 plain, 24 txn, 26 aborted, markers
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:
        for i in range(20):
            p.send(source, key=b"tail", value=b"%d" % i, headers=[("n", b"%d" % i)], partition=i % 2)
    src = {p: consume_all(bootstrap_servers, source, p) for p in range(2)}
    assert _ends(admin, source, 2) == [40, 40]
    uid = uuid.uuid4().hex[:8]
    moved, at_end, active = f"g-moved-{uid}", f"g-end-{uid}", f"g-active-{uid}"
    tp0, tp1 = TopicPartition(source, 0), TopicPartition(source, 1)
    # 26 is an aborted record (next committed: 28), 33 a plain record after the transactions
    _set_group_offsets(admin, moved, {tp0: 26, tp1: 33})
    _set_group_offsets(admin, at_end, {tp0: 40})
    _set_group_offsets(admin, active, {tp0: 5})
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    snapshots = [i.key for i in open_store(url).list("groups")]
    assert snapshots, "the backup snapshotted group offsets"

    member = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=active, enable_auto_commit=False)
    try:
        member.subscribe([source])
        wait_for(lambda: bool(member.poll(timeout_ms=200) is not None and member.assignment()), 30, "group join")
        target = f"{source}-r"
        res = _restore(bootstrap_servers, url, source, to_topic=target, groups=True)
    finally:
        member.close()
    # The same restore done first without groups, then re-run with them (every partition already
    # complete): the offsets are translated all the same.
    again_target = f"{source}-r2"
    assert _restore(bootstrap_servers, url, source, to_topic=again_target).records == 72
    res2 = _restore(bootstrap_servers, url, source, to_topic=again_target, groups=True)
    assert res2.records == 0 and all(p.already_done for p in res2.partitions)
    assert {g.group: g.offsets for g in res2.groups} == {
        moved: {f"{again_target}:0": 25, f"{again_target}:1": 29}, at_end: {f"{again_target}:0": 37},
        active: {f"{again_target}:0": 5}}
    assert res2.ok and all(g.committed for g in res2.groups)

    by_id = {g.group: g for g in res.groups}
    assert set(by_id) == {moved, at_end, active}
    assert not res.ok, "a group with members could not be moved"
    assert by_id[active].error and "active members" in by_id[active].error and not by_id[active].committed
    assert by_id[moved].committed and by_id[moved].error is None
    assert by_id[at_end].committed and by_id[at_end].error is None
    # the translation is not the identity: the target has no aborted records and only one marker,
    # after the restore's single transaction
    assert by_id[moved].offsets == {f"{target}:0": 25, f"{target}:1": 29}
    assert by_id[moved].source_offsets == {f"{source}:0": 26, f"{source}:1": 33}
    assert by_id[at_end].offsets == {f"{target}:0": 37}

    def source_next(part: int, offset: int) -> Row | None:
        return next((r for r in src[part] if r[0] >= offset), None)

    got = _group_positions(bootstrap_servers, moved, target, 2)
    for part, src_offset in ((0, 26), (1, 33)):
        expected = source_next(part, src_offset)
        committed, first = got[part]
        assert expected is not None and first is not None
        assert committed != src_offset
        assert first[1:] == expected[1:], f"partition {part}: same key, value, headers, timestamp"
    assert got[0][1] is not None and got[0][1][4] == b"committed", "skipped the aborted record"
    end_got = _group_positions(bootstrap_servers, at_end, target, 1)
    assert end_got[0] == (37, None), "a caught-up group stays caught up (past the commit marker)"
    # the active group's offsets on the target were not touched
    c = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=active, enable_auto_commit=False)
    try:
        assert c.committed(TopicPartition(target, 0)) is None
    finally:
        c.close()


# ------------------------------------------------------------------------------------- 7. dry run
def test_dry_run_writes_nothing(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    _produce_hard(bootstrap_servers, source, 2)
    group = f"g-dry-{uuid.uuid4().hex[:8]}"
    _set_group_offsets(admin, group, {TopicPartition(source, 1): 28})
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    counts = [len(consume_all(bootstrap_servers, source, p)) for p in range(2)]
    before = _store_keys(url)
    target = f"{source}-r"

    res = _restore(bootstrap_servers, url, source, to_topic=target, dry_run=True, groups=True)
    assert res.dry_run and res.created_topic, "reports that it would create the topic"
    assert [p.records for p in res.partitions] == counts and res.records == sum(counts)
    assert res.partitions[0].first_source_offset == 0 and res.partitions[0].last_source_offset == 28
    [g] = [g for g in res.groups if g.group == group]
    assert g.offsets == {f"{target}:1": 25} and not g.committed
    assert not _topic_exists(admin, target)
    assert _store_keys(url) == before and not any(k.startswith("restores/") for k in before)

    existing = make_topic(2)
    res2 = _restore(bootstrap_servers, url, source, to_topic=existing, dry_run=True, groups=True)
    assert not res2.created_topic and res2.records == sum(counts)
    assert _ends(admin, existing, 2) == [0, 0]
    assert _store_keys(url) == before
    c = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        assert c.committed(TopicPartition(existing, 1)) is None
    finally:
        c.close()


# ------------------------------------------------------------------------------------------- CLI
def test_cli_dry_run_json_and_unknown_topic(bootstrap_servers: str, make_topic: Any, tmp_path: Path,
                                            admin: KafkaAdminClient) -> None:
    source = make_topic(2)
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:
        for i in range(7):
            p.send(source, value=b"%d" % i, partition=i % 2)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    target = f"{source}-r"
    out = _cli("restore", "-s", url, "-b", bootstrap_servers, "-t", source, "--to-topic", target,
               "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["dry_run"] is True and doc["ok"] is True and doc["created_topic"] is True
    assert doc["records"] == 7 and [p["records"] for p in doc["partitions"]] == [4, 3]
    assert doc["topic"] == source and doc["target_topic"] == target
    assert not _topic_exists(admin, target)

    missing = f"not-backed-up-{uuid.uuid4().hex[:8]}"
    bad = _cli("restore", "-s", url, "-b", bootstrap_servers, "-t", missing, "--to-topic", target)
    assert bad.returncode == 1
    assert f"no backup of topic {missing!r}" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not _topic_exists(admin, target)


def test_crash_between_commit_and_checkpoint_is_read_back(bootstrap_servers: str, make_topic: Any,
                                                          tmp_path: Path) -> None:
    """Killed after a transaction committed but before its progress record was written: the re-run
    finds those records in the target (read_committed) and skips exactly them."""
    source = make_topic(1)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=1000) as p:
        for i in range(3000):  # batches of exactly 100 records: transactions end at 1000, 2000, 3000
            p.send(source, key=b"%d" % i, value=b"v%d" % i, partition=0)
            if i % 100 == 99:
                p.flush()
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    target = f"{source}-r"
    argv = [sys.executable, "-m", "kafka_backup.cli", "restore", "-s", url, "-b", bootstrap_servers,
            "-t", source, "--to-topic", target, "--no-progress", "--json", "--checkpoint-records", "1000"]
    crashed = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "KAFKA_BACKUP_FAILPOINT": "restore-after-commit@2"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(consume_all(bootstrap_servers, target, 0)) == 2000, "two transactions committed, one checkpointed"
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    [p0] = json.loads(rerun.stdout)["partitions"]
    assert (p0["resumed_skip"], p0["records"]) == (1000, 1000)
    assert _content(consume_all(bootstrap_servers, target, 0)) == _content(consume_all(bootstrap_servers, source, 0))


# ---------------------------------------------------------------- 8. what kafka-python cannot send
def _zigzag(value: int, out: bytearray) -> None:
    n = (value << 1) ^ (value >> 63)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _raw_batch(records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
               codec: int = 0) -> bytes:
    """A non-transactional v2 batch, encoded here (independently of the engine's encoder) because
    kafka-python's producer refuses null header values and null key+value."""
    import gzip
    import struct

    import crc32c

    def field(value: bytes | None, out: bytearray) -> None:
        _zigzag(-1 if value is None else len(value), out)
        out += value or b""

    body = bytearray()
    for delta, (ts, key, value, headers) in enumerate(records):
        rec = bytearray(b"\x00")
        _zigzag(ts - records[0][0], rec)
        _zigzag(delta, rec)
        field(key, rec)
        field(value, rec)
        _zigzag(len(headers), rec)
        for hk, hv in headers:
            field(hk.encode(), rec)
            field(hv, rec)
        _zigzag(len(rec), body)
        body += rec
    payload = gzip.compress(bytes(body)) if codec == 1 else bytes(body)
    head = struct.pack(">qiibIhiqqqhii", 0, 49 + len(payload), -1, 2, 0, codec, len(records) - 1, records[0][0],
                       max(r[0] for r in records), -1, -1, -1, len(records))
    batch = bytearray(head + payload)
    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
    return bytes(batch)


def _produce_raw(bootstrap: str, topic: str, batches: list[bytes]) -> None:
    """Each batch in its own ProduceRequest (acks=all) on a plain connection."""
    from kafka.protocol.producer import ProduceRequest
    from kafka_backup._kafka_raw import RawKafka

    topic_cls = ProduceRequest.TopicProduceData
    with RawKafka(bootstrap_servers=[bootstrap]) as raw:
        manager = raw._manager
        for batch in batches:
            request = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30_000, topic_data=[topic_cls(
                name=topic, partition_data=[topic_cls.PartitionProduceData(index=0, records=batch)])],
                min_version=3, max_version=9)
            response = manager.run(lambda request=request: manager.send(request))
            [part] = response.responses[0].partition_responses
            assert part.error_code == 0, part


NULLS: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
    (BASE, None, None, [("n", None)]),  # null key and value, a null header value
    (BASE + 1, b"k", None, [("a", b"1"), ("n", None), ("a", b"")]),  # tombstone; duplicate, empty and null headers
    (BASE - 5, None, b"", []),  # older than its predecessor: a negative timestamp delta
    (BASE + 2, b"", b"v", [("n", None), ("n", None)]),
]


def test_null_header_values_and_null_key_and_value_round_trip(bootstrap_servers: str, make_topic: Any,
                                                              tmp_path: Path) -> None:
    source = make_topic(1, {"message.timestamp.before.max.ms": "9223372036854775807"})
    _produce_raw(bootstrap_servers, source, [_raw_batch(NULLS), _raw_batch(NULLS, codec=1)])
    src = consume_all(bootstrap_servers, source, 0)
    assert len(src) == 8 and src[0][3:] == (None, None, (("n", None),)), "the broker kept what was produced"
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])

    # Whole batches: sent as stored (re-stamped).
    res = _restore(bootstrap_servers, url, source, to_topic=f"{source}-r")
    assert res.records == 8
    assert _content(consume_all(bootstrap_servers, f"{source}-r", 0)) == _content(src)
    # A range that cuts both batches: both are rebuilt by the engine's own encoder (the second
    # one gzip-compressed again).
    mid = _restore(bootstrap_servers, url, source, to_topic=f"{source}-mid", from_offset=1, to_offset=7)
    assert mid.records == 6
    assert _content(consume_all(bootstrap_servers, f"{source}-mid", 0)) == _content(src[1:7])


# ------------------------------------------------------------------- 9. corruption and concurrency
@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_damaged_segment_stops_the_restore_before_it_lands(bootstrap_servers: str, make_topic: Any,
                                                            tmp_path: Path, damage: str) -> None:
    """Restore skips per-batch CRCs because the object's SHA-256 is checked first: a damaged
    segment must still be refused by name, and nothing of it may become visible."""
    source = make_topic(1)
    with KafkaProducer(bootstrap_servers=bootstrap_servers) as p:
        for i in range(200):
            p.send(source, key=b"%d" % i, value=b"v%d" % i, partition=0)
    url = _url(tmp_path)
    _backup_until_complete(bootstrap_servers, url, [source])
    [segment] = list((tmp_path / "backup").glob("topics/*/0/segments/*"))
    data = bytearray(segment.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2:]
    segment.write_bytes(bytes(data))
    target = f"{source}-r"
    with pytest.raises(KafkaBackupError, match=segment.name):
        _restore(bootstrap_servers, url, source, to_topic=target)
    assert consume_all(bootstrap_servers, target, 0) == []


def test_a_second_restore_with_the_same_id_fences_the_first(bootstrap_servers: str, make_topic: Any) -> None:
    """Two runs of the same restore at once: the later InitProducerId fences the earlier producer,
    whose next batch is refused with an error that says why; the target keeps none of it."""
    from kafka_backup._kafka_raw import RawKafka
    from kafka_backup._produce import Outgoing, TransactionalProducer

    target = make_topic(1)
    txn_id = f"it-fence-{uuid.uuid4().hex[:8]}"
    record = [(1_700_000_000_000, b"k", b"v", ())]
    servers = [bootstrap_servers]
    with RawKafka(bootstrap_servers=servers) as raw1, RawKafka(bootstrap_servers=servers) as raw2:
        first = TransactionalProducer(raw1, txn_id, request_timeout_s=15)
        first.init()
        first.begin()
        first.send_many([Outgoing(target, 0, 1, 0, rebuilt=record)])
        first.flush()
        second = TransactionalProducer(raw2, txn_id, request_timeout_s=15)
        second.init()  # aborts the first one's open transaction
        with pytest.raises(RestoreError, match="took over"):
            first.send_many([Outgoing(target, 0, 1, 1, rebuilt=record)])
            first.commit()
    assert consume_all(bootstrap_servers, target, 0) == []
