"""``kafka-backup cost`` on a backup built from the engine's own objects: the arithmetic, exactly.

The fixture is written with the catalog helpers the engine uses (commit records through
``PartitionChain.try_commit``, anchors, hints, ``write_json`` run summaries and snapshots), dated
on days before "now" so every per-day figure, request count and dollar can be checked by hand.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka_backup import cli
from kafka_backup.catalog import CommitRecord, Head, PartitionChain, claim_topic_id, utc_stamp, write_json
from kafka_backup.cost import (
    DEFAULT_PRICES,
    GB,
    CostReport,
    PriceTable,
    analyze,
    format_report,
    function_vcpus,
    load_prices,
)
from kafka_backup.errors import ConfigError
from kafka_backup.storage import MULTIPART_CHUNK, Store, open_store

DOCS = Path(__file__).resolve().parents[2] / "docs"
BIG = MULTIPART_CHUNK + 1  # one byte over the multipart threshold: two parts

#: one cloud with round prices, so each dollar figure is a count times a small number
FIXTURE_PRICES: dict[str, Any] = {
    "clouds": {
        "x": {"label": "X store", "region": "test", "storage_gb_month": 3.0, "write_per_1000": 1000.0,
              "list_per_1000": 2000.0, "read_per_1000": 500.0, "multipart_extra_writes": 2,
              "function": {"label": "X fn", "gb_second": 0.01, "vcpu_second": 0.001, "vcpus": 2,
                           "per_million_invocations": 1_000_000, "free_gb_seconds": 10,
                           "free_vcpu_seconds": 5, "free_invocations": 1}},
    },
    "model": {"memory_mb": 512, "hint_every_links": 16},
}


def _prices(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _fixture_table(tmp_path: Path, **model: Any) -> PriceTable:
    doc = json.loads(json.dumps(FIXTURE_PRICES))
    doc["model"].update(model)
    # every default cloud removed, only "x" left: the report prices exactly one cloud
    doc["clouds"].update({name: None for name in DEFAULT_PRICES["clouds"]})
    return load_prices(_prices(tmp_path, doc))


class Backup:
    """A small backup written with the engine's helpers; ``at(k, hh, mm)`` is day D-k at hh:mm UTC."""

    def __init__(self, store: Store, today: datetime) -> None:
        self.store = store
        self.today = today.replace(hour=0, minute=0, second=0, microsecond=0)

    def at(self, days_ago: int, hour: int, minute: int = 0) -> datetime:
        return self.today - timedelta(days=days_ago) + timedelta(hours=hour, minutes=minute)

    def commit(self, topic: str, partition: int, start: int, end: int, run_id: str, when: datetime,
               size: int | None) -> None:
        chain = PartitionChain(self.store, topic, partition)
        iso = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if size is None:
            rec = CommitRecord(kind="gap", topic=topic, partition=partition, start=start, end=end, run_id=run_id,
                               committed_at=iso, reason="retention", log_start_offset=end)
        else:
            key = chain.segment_key(start, end, run_id)
            self.store.put(key, b"\0" * size)
            rec = CommitRecord(kind="segment", topic=topic, partition=partition, start=start, end=end,
                               run_id=run_id, committed_at=iso, segment=key[len(chain.base) + 1:], size=size,
                               sha256="0" * 64, records=end - start, batches=1, raw_bytes=size)
        assert chain.try_commit(rec)

    def run(self, run_id: str, when: datetime, seconds: float, parts: list[dict[str, Any]]) -> None:
        write_json(self.store, f"runs/{utc_stamp(when)}-{run_id}.json", {
            "run_id": run_id, "duration_seconds": seconds, "started_at": "", "finished_at": "",
            "partitions": [{"segments": 0, "gaps": [], **p} for p in parts]})


def _p(topic: str, partition: int, start: int | None, end: int | None, target: int, **kw: Any) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "start_offset": start, "end_offset": end,
            "target_offset": target, **kw}


def _build(store: Store) -> Backup:
    """orders[0]: 4 links in the window (one a gap, one segment multipart) and one before it;
    orders[1]: 1 link and an orphan segment; events[0]: 1 link by a run that left no summary."""
    b = Backup(store, datetime.now(UTC))
    for topic, partition in [("orders", 0), ("orders", 1), ("events", 0)]:
        PartitionChain(store, topic, partition).anchor(0)
    claim_topic_id(store, "orders", "5c794685-b0eb-4b94-b4bc-fe88144ab00e")
    b.commit("orders", 0, 0, 10, "r0", b.at(10, 12), 500)  # before the window: sets the history's start
    b.commit("orders", 0, 10, 20, "ra", b.at(3, 12), 1000)
    b.commit("orders", 0, 20, 30, "rb", b.at(2, 12), 2000)
    b.commit("orders", 0, 30, 40, "rb", b.at(2, 12, 1), BIG)
    b.commit("orders", 0, 40, 45, "rc", b.at(1, 12), None)  # retention gap
    b.commit("orders", 1, 0, 5, "rc", b.at(1, 12), 700)
    b.commit("events", 0, 0, 3, "rx", b.at(2, 12), 300)
    store.put(PartitionChain(store, "orders", 1).segment_key(5, 9, "rz"), b"\1" * 123)  # orphan
    PartitionChain(store, "orders", 0).write_head(Head(45, 45))
    b.run("r0", b.at(9, 12), 99.0, [_p("orders", 0, None, 10, 10, segments=1)])  # before the window
    b.run("ra", b.at(3, 12, 5), 10.0, [_p("orders", 0, 10, 20, 20, segments=1), _p("orders", 1, None, None, 0)])
    b.run("rb", b.at(2, 12, 5), 20.0, [_p("orders", 0, 20, 40, 40, segments=2), _p("orders", 1, None, None, 0)])
    b.run("rc", b.at(1, 12, 5), 30.5, [_p("orders", 0, 40, 45, 45, gaps=[{"start": 40, "end": 45}]),
                                       _p("orders", 1, None, 5, 5, segments=1)])
    b.run("rd", b.at(1, 18), 4.0, [_p("orders", 0, 45, 45, 50), _p("orders", 1, 5, 5, 5)])  # orders[0] held back
    write_json(store, f"topics/orders/metadata/{utc_stamp(b.at(3, 12, 5))}-ra.json", {"topic": "orders"})
    write_json(store, f"topics/events/metadata/{utc_stamp(b.at(2, 12, 5))}-rb.json", {"topic": "events"})
    write_json(store, f"groups/{utc_stamp(b.at(1, 12, 5))}-rc.json", {"groups": {}})
    return b


@pytest.fixture
def backup() -> Backup:
    return _build(open_store(f"memory://{uuid.uuid4().hex}"))


def _sizes(store: Store, pattern: str) -> list[int]:
    return [i.size for i in store.list("") if re.fullmatch(pattern, i.key)]


def _analyze(b: Backup, table: PriceTable) -> CostReport:
    return analyze(b.store, days=7, prices=table, now=datetime.now(UTC))


def test_measured_writes_per_day_and_partition(backup: Backup, tmp_path: Path) -> None:
    report = _analyze(backup, _fixture_table(tmp_path))
    days = {d.date: d for d in report.days}
    d = {k: backup.at(k, 0).date().isoformat() for k in range(8)}
    assert len(report.days) == 8  # the window touches 8 calendar days
    assert report.measured_days == 7  # the backup is older than the window
    # D-3: run ra; orders[0] [10, 20); its summary and the orders snapshot
    assert (days[d[3]].runs, days[d[3]].run_seconds, days[d[3]].gb_seconds) == (1, 10.0, 5.0)
    assert (days[d[3]].segments, days[d[3]].segment_bytes, days[d[3]].commits, days[d[3]].other_objects) == \
        (1, 1000, 1, 2)
    # D-2: run rb; orders[0] [20, 30) and [30, 40) (multipart), events[0] [0, 3) of the summary-less run
    assert (days[d[2]].runs, days[d[2]].gb_seconds) == (1, 10.0)
    assert (days[d[2]].segments, days[d[2]].segment_bytes, days[d[2]].commits) == (3, 2000 + BIG + 300, 3)
    assert (days[d[2]].multipart_uploads, days[d[2]].multipart_parts) == (1, 2)
    # D-1: runs rc and rd; the gap and orders[1] [0, 5); two summaries and the group snapshot
    assert (days[d[1]].runs, days[d[1]].run_seconds, days[d[1]].gb_seconds) == (2, 34.5, 17.25)
    assert (days[d[1]].segments, days[d[1]].segment_bytes, days[d[1]].commits, days[d[1]].other_objects) == \
        (1, 700, 2, 3)
    # today: 3 anchors, the orphan and topic.json, dated by their listing time
    assert (days[d[0]].runs, days[d[0]].commits, days[d[0]].other_objects) == (0, 0, 5)
    assert days[d[0]].other_bytes == sum(_sizes(backup.store, r".*/anchor\.json|.*/topic\.json|.*-rz\.kbseg"))
    for k in (4, 5, 6, 7):
        assert days[d[k]].objects_written == 0 and days[d[k]].runs == 0
    # commit bytes are the commit objects' own sizes
    in_window = _sizes(backup.store, r".*/commits/\d{20}\.json")
    old = _sizes(backup.store, r"topics/orders/0/commits/0{20}\.json")[0]
    assert sum(r.commit_bytes for r in report.days) == sum(in_window) - old
    assert (report.runs, report.run_seconds, report.gb_seconds) == (4, 64.5, 32.25)

    parts = {(p.topic, p.partition): p for p in report.partitions}
    o0, o1, e0 = parts[("orders", 0)].window, parts[("orders", 1)].window, parts[("events", 0)].window
    assert (o0.segments, o0.commits, o0.other_objects, o0.segment_bytes) == (3, 4, 1, 1000 + 2000 + BIG)
    assert (o1.segments, o1.commits, o1.other_objects) == (1, 1, 2)  # anchor + orphan
    assert (e0.segments, e0.commits, e0.other_objects) == (1, 1, 1)
    assert report.shared.other_objects == 4 + 2 + 1 + 1  # run summaries, topic snapshots, groups, topic.json
    assert report.total.objects_written == 11 + 4 + 8


def test_stored_objects_by_kind(backup: Backup, tmp_path: Path) -> None:
    report = _analyze(backup, _fixture_table(tmp_path))
    everything = list(backup.store.list(""))
    assert report.stored_total.objects == len(everything) == report.objects_listed
    assert report.stored_total.bytes == sum(i.size for i in everything)
    assert report.stored["segments"].objects == 7  # 6 committed + 1 orphan
    assert report.stored["segments"].bytes == 500 + 1000 + 2000 + BIG + 700 + 300 + 123
    assert report.stored["commits"].objects == 7
    assert (report.stored["hints"].objects, report.stored["anchors"].objects) == (1, 3)
    assert (report.stored["run summaries"].objects, report.stored["topic snapshots"].objects,
            report.stored["group snapshots"].objects, report.stored["topic identities"].objects) == (5, 2, 1, 1)
    o0 = next(p for p in report.partitions if (p.topic, p.partition) == ("orders", 0))
    assert o0.stored["segments"].objects == 4 and o0.stored["hints"].objects == 1
    # the report's own cost: the 7 commit records listed recently and the 4 summaries of the window
    assert report.objects_read == 7 + 4


def test_modelled_requests_follow_the_hint_lag(backup: Backup, tmp_path: Path) -> None:
    report = _analyze(backup, _fixture_table(tmp_path, hint_every_links=16))
    parts = {(p.topic, p.partition): p.window for p in report.partitions}
    o0, o1, e0 = parts[("orders", 0)], parts[("orders", 1)], parts[("events", 0)]
    # orders[0]: ra 1 link (lag 0 -> 1), rb 2 links (1 -> 3), rc 1 gap (3 -> 4), rd held back (lag 4):
    # each run reads the hint (1) and, having new records, probes 1 + lag
    assert (o0.reads, o0.lists, o0.hint_writes) == (2 + 3 + 5 + 6, 3, 0)
    assert (o0.partition_runs, o0.written_partition_runs) == (4, 3)
    # orders[1]: idle in ra and rb (1 GET each), written in rc (2 GETs), idle with a lagging hint in rd (3)
    assert (o1.reads, o1.lists, o1.hint_writes) == (1 + 1 + 2 + 3, 1, 0)
    # events[0]: known only from its commit (the run left no summary): one planning, written
    assert (e0.reads, e0.lists, e0.partition_runs) == (2, 1, 1)
    assert report.shared.reads == 4  # topic.json once per topic per run (one topic in each summary)
    assert (report.total.reads, report.total.lists, report.total.hint_writes) == (29, 5, 0)

    every = _analyze(backup, _fixture_table(tmp_path, hint_every_links=1))  # today's engine: hint per move
    parts = {(p.topic, p.partition): p.window for p in every.partitions}
    assert (parts[("orders", 0)].reads, parts[("orders", 0)].hint_writes) == (2 + 2 + 2 + 2, 3)
    assert (parts[("orders", 1)].reads, parts[("orders", 1)].hint_writes) == (1 + 1 + 2 + 1, 1)
    assert (every.total.reads, every.total.hint_writes) == (8 + 5 + 2 + 4, 5)
    by_day = {r.date: r for r in every.days}
    assert by_day[backup.at(2, 0).date().isoformat()].hint_writes == 2  # orders[0] in rb, events[0] in rx


def test_monthly_bill_arithmetic(backup: Backup, tmp_path: Path) -> None:
    report = _analyze(backup, _fixture_table(tmp_path))
    (bill,) = report.monthly
    f = 30 / 7
    assert report.month_factor == pytest.approx(f)
    # 23 objects, the multipart one as 2 parts + 2 extra requests: 23 - 1 + 2 + 2 = 26 PUT-class
    assert report.total.write_requests(2) == 26
    assert bill.write_requests == pytest.approx(26 * f)
    assert bill.write_usd == pytest.approx(26 * f * 1.0)  # 1000 USD per 1000
    assert (bill.list_requests, bill.list_usd) == (pytest.approx(5 * f), pytest.approx(5 * f * 2.0))
    assert (bill.read_requests, bill.read_usd) == (pytest.approx(29 * f), pytest.approx(29 * f * 0.5))
    stored = sum(i.size for i in backup.store.list(""))
    assert bill.storage_gb == pytest.approx(stored / GB)
    assert bill.storage_usd == pytest.approx(stored / GB * 3.0)
    # 64.5 run seconds at 0.5 GB and 2 vCPUs, 4 runs, minus the free grants
    assert bill.gb_seconds == pytest.approx(32.25 * f)
    assert bill.vcpu_seconds == pytest.approx(129 * f)
    assert bill.invocations == pytest.approx(4 * f)
    fn = (32.25 * f - 10) * 0.01 + (129 * f - 5) * 0.001 + (4 * f - 1) * 1.0
    assert bill.function_usd == pytest.approx(fn)
    assert bill.total_usd == pytest.approx(stored / GB * 3 + 26 * f + 10 * f + 14.5 * f + fn)
    # the partitions' request dollars add up to the bill less the shared per-run objects and reads
    shared = (8 * 1.0 + 4 * 0.5) * f
    assert sum(p.usd_per_month["x"] for p in report.partitions) + shared == pytest.approx(
        bill.write_usd + bill.list_usd + bill.read_usd)
    o0 = next(p for p in report.partitions if (p.topic, p.partition) == ("orders", 0))
    assert o0.requests_per_month == pytest.approx((7 + 1 - 1 + 2 + 2 + 3 + 16) * f)


def _schedule(store: Store, now: datetime, runs: int, every: int) -> None:
    """One partition, a run every 5 minutes; the partition always has new records and is written by
    every ``every``-th run (1: today's engine; 12: the write policy's hourly max_lag)."""
    b = Backup(store, now)
    end = 0
    for i in range(runs):
        ts = now - timedelta(minutes=5 * (runs - i))
        run_id = f"r{i:04d}"
        written = (i + 1) % every == 0
        if written:
            b.commit("t", 0, end, end + 10, run_id, ts - timedelta(seconds=1), 1296)
            end += 10
        b.run(run_id, ts, 1.0, [_p("t", 0, end - 10 if written else end, end, end + 10 * (not written),
                                   segments=int(written))])


@pytest.mark.parametrize(("every", "hint_every_links", "runs", "puts", "lists", "gets"), [
    # before: every run writes segment, commit and hint, sweeps once, reads hint + probe
    (1, 1, 12, 3 * 12, 12, 2 * 12),
    # the policy, hint every 16 links: 16 hourly links in 192 runs; the lag climbs 0..15, one step an
    # hour, and every run probes past it: 2 + 7.5 GETs a run on average
    (12, 16, 192, 16 * 2 + 1, 16, 192 * 2 + 12 * sum(range(16))),
    # the policy, hint whenever the chain moved: 2 GETs a run
    (12, 1, 192, 16 * 3, 16, 192 * 2),
])
def test_docs_worked_example_rates(tmp_path: Path, every: int, hint_every_links: int, runs: int, puts: int,
                                   lists: int, gets: float) -> None:
    """The per-partition rates behind the 2 000-partition example of docs/operations.md."""
    store = open_store(f"memory://{uuid.uuid4().hex}")
    now = datetime.now(UTC)
    _schedule(store, now, runs, every)
    report = analyze(store, days=1, prices=_fixture_table(tmp_path, hint_every_links=hint_every_links), now=now)
    (p,) = report.partitions
    w = p.window
    assert (w.segments + w.commits + w.hint_writes, w.lists, w.reads) == (puts, lists, gets)
    assert report.shared.reads == runs  # topic.json, once a run
    if every == 12 and hint_every_links == 16:
        assert gets == 9.5 * runs and puts == 16 * 2.0625


def test_memory_and_free_grants(backup: Backup, tmp_path: Path) -> None:
    doc = json.loads(json.dumps(FIXTURE_PRICES))
    doc["clouds"].update({name: None for name in DEFAULT_PRICES["clouds"]})
    doc["clouds"]["x"]["function"].update(free_gb_seconds=1e9, free_vcpu_seconds=1e9, free_invocations=1e9)
    report = analyze(backup.store, days=7, prices=load_prices(_prices(tmp_path, doc), memory_mb=2048))
    (bill,) = report.monthly
    assert report.gb_seconds == pytest.approx(64.5 * 2)
    assert bill.function_usd == 0  # inside the free grants
    assert function_vcpus(load_prices().clouds["gcs"].function, 512) == 0.333  # Cloud Run's default
    assert function_vcpus(load_prices().clouds["gcs"].function, 3000) == 2.0
    assert function_vcpus(load_prices().clouds["s3"].function, 512) == 0.0  # Lambda bills memory only


def test_young_backup_is_not_diluted_over_the_whole_window(tmp_path: Path) -> None:
    store = open_store(f"memory://{uuid.uuid4().hex}")
    b = Backup(store, datetime.now(UTC))
    b.commit("t", 0, 0, 1, "ra", b.at(1, 12), 100)
    b.run("ra", b.at(1, 12, 1), 2.0, [_p("t", 0, None, 1, 1, segments=1)])
    now = datetime.now(UTC)
    report = analyze(store, days=7, prices=_fixture_table(tmp_path), now=now)
    span = (now - b.at(1, 12)).total_seconds() / 86400
    assert report.measured_days == pytest.approx(span)
    assert report.monthly[0].invocations == pytest.approx(30 / span)


def test_old_commits_are_not_read(tmp_path: Path) -> None:
    """The listing time bounds a commit's time: records listed before the window cost no GET."""
    store = open_store(f"file://{tmp_path / 'bk'}")
    b = Backup(store, datetime.now(UTC))
    b.commit("t", 0, 0, 1, "r0", b.at(20, 12), 100)
    b.commit("t", 0, 1, 2, "r1", b.at(2, 12), 100)
    chain = PartitionChain(store, "t", 0)
    old = b.at(20, 12).timestamp()
    for key in (chain.commit_key(0), chain.segment_key(0, 1, "r0")):
        os.utime(tmp_path / "bk" / key, (old, old))
    store.put(chain.segment_key(5, 6, "zz"), b"x")  # an orphan of today
    old_orphan = chain.segment_key(7, 8, "yy")
    store.put(old_orphan, b"y")
    os.utime(tmp_path / "bk" / old_orphan, (old, old))
    report = analyze(store, days=7, prices=_fixture_table(tmp_path))
    assert report.objects_read == 1
    assert (report.total.commits, report.total.segments, report.total.other_objects) == (1, 1, 1)
    assert report.measured_days == 7


def test_damaged_records_are_reported_not_fatal(backup: Backup, tmp_path: Path) -> None:
    backup.store.put("topics/orders/0/commits/00000000000000000099.json", b"{not json")
    write_json(backup.store, f"runs/{utc_stamp(backup.at(1, 20))}-bad.json", {"duration_seconds": "soon"})
    report = _analyze(backup, _fixture_table(tmp_path))
    assert any("00000000000000000099.json" in p for p in report.problems)
    assert any("-bad.json: duration_seconds" in p for p in report.problems)
    assert report.runs == 5 and report.run_seconds == 64.5  # the damaged run counts, with 0 s


def test_price_file_overrides_and_errors(tmp_path: Path) -> None:
    table = load_prices(_prices(tmp_path, {"clouds": {"s3": {"write_per_1000": 0.01}, "azure_cool": None},
                                           "model": {"hint_every_links": 1}}))
    assert table.clouds["s3"].write_per_1000 == 0.01
    assert table.clouds["s3"].read_per_1000 == 0.0004  # untouched keys keep the default
    assert "azure_cool" not in table.clouds and table.model.hint_every_links == 1
    with pytest.raises(ConfigError, match=r"prices\.yaml: clouds\.s3\.writes_per_1000: Extra inputs"):
        load_prices(_prices(tmp_path, {"clouds": {"s3": {"writes_per_1000": 0.01}}}))
    with pytest.raises(ConfigError, match=r"clouds\.gcs\.function\.gb_second: Input should be greater"):
        load_prices(_prices(tmp_path, {"clouds": {"gcs": {"function": {"gb_second": -1}}}}))
    with pytest.raises(ConfigError, match=r"clouds\.r2\.region: Field required"):
        load_prices(_prices(tmp_path, {"clouds": {"r2": {"label": "R2"}}}))
    with pytest.raises(ConfigError, match="cannot read price file"):
        load_prices(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="--memory-mb"):
        load_prices(None, memory_mb=0)


def test_docs_price_table_is_the_default() -> None:
    text = (DOCS / "pricing.md").read_text()
    block = re.search(r"<!-- price-table -->\s*```yaml\n(.*?)```", text, re.S)
    assert block, "docs/pricing.md has no price-table YAML block"
    assert PriceTable.model_validate(yaml.safe_load(block.group(1))) == load_prices()


def test_cli_cost_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = uuid.uuid4().hex
    _build(open_store(f"memory://{name}"))
    prices = _prices(tmp_path, {"model": {"hint_every_links": 1}})
    assert cli.main(["cost", "--storage", f"memory://{name}", "--prices", str(prices), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [b["cloud"] for b in doc["monthly"]] == ["s3", "azure_hot", "azure_cool", "gcs"]
    s3 = doc["monthly"][0]
    f = 30 / 7
    # 23 objects + 5 hints, the multipart segment as 2 parts + 2 (S3: create and complete)
    assert s3["write_requests"] == pytest.approx(31 * f)
    assert s3["write_usd"] == pytest.approx(31 * f * 0.005 / 1000)
    assert s3["read_usd"] == pytest.approx(19 * f * 0.0004 / 1000)
    assert s3["function_usd"] == 0  # a few seconds a day are inside Lambda's free tier
    assert doc["monthly"][1]["write_requests"] == pytest.approx(30 * f)  # Azure: blocks + 1 commit
    assert doc["runs"] == 4 and doc["measured"] and doc["modelled"]

    assert cli.main(["cost", "--storage", f"memory://{name}", "--memory-mb", "1024", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "S3 Standard" in out and "Azure Blob cool" in out and "GCS Standard" in out
    assert "orders[0]" in out and "Top 2 partitions" in out
    assert "GB-s at 1024 MiB" in out and "Modelled:" in out and "Measured:" in out


def test_cli_cost_refuses_an_empty_location_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    empty = f"memory://{uuid.uuid4().hex}"
    assert cli.main(["cost", "--storage", empty]) == 1
    assert "no backup found" in capsys.readouterr().err
    assert cli.main(["cost", "--storage", empty, "--days", "0"]) == 2
    assert "--days" in capsys.readouterr().err


def test_format_report_names_what_is_modelled(backup: Backup, tmp_path: Path) -> None:
    text = format_report(_analyze(backup, _fixture_table(tmp_path, hint_every_links=4)), top=1)
    assert "hints*" in text and "GET*" in text and "LIST*" in text
    assert "moved 4 links past it" in text
    assert "Top 1 partitions" in text
