"""What an existing backup costs to keep and to run (``kafka-backup cost``), read from storage alone.

Serverless runs are short and frequent, so the request bill, not the gigabytes, is what grows: a
run that writes three small objects per partition every five minutes pays for those requests
whatever the data volume.  This module measures what the runs really wrote and prices it.

What is **measured** (from the store, like ``ls``):

- objects and bytes stored now, per partition and per kind (one listing of the prefix);
- segments and commit records written per day, and their bytes (the commit records of the last
  ``days`` days: their ``committed_at``, ``size`` and ``run_id``);
- run summaries, topic-config and group snapshots written per day (the time in their key);
- runs per day and their durations (run summaries), hence function GB-seconds at a memory size.

What is **modelled** (``docs/pricing.md``, every number overridable with ``--prices``):

- head-hint writes: the hint is overwritten, so its history is not in the store; it is
  rewritten once the chain moved ``model.hint_every_links`` links past it;
- GET-class requests: each run reads every partition's hint, probes the next commit key when the
  partition had new records (plus one GET per link the hint lags), and reads each topic's
  identity; LIST requests: one orphan sweep per partition a run writes to;
- multipart uploads: a segment above 8 MiB costs its parts plus the cloud's extra requests;
- the month: the window's average per day times 30.

Example::

    report = analyze(open_store("s3://bucket/kafka"), days=7, prices=load_prices("my-prices.yaml"))
    print(format_report(report))          # or report.to_dict() for JSON
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalog import CommitRecord, decode_topic
from .errors import ConfigError, CorruptSegmentError, ObjectNotFound
from .report import human_bytes
from .storage import MULTIPART_CHUNK, ObjectInfo, Store

log = logging.getLogger("kafka_backup.cost")

MONTH_DAYS = 30
GB = 1 << 30  # the providers' calculators bill a "GB" of storage and of function memory as 2^30 bytes
_DAY = timedelta(days=1)
#: the shortest history a month is extrapolated from (a backup an hour old is not a month's evidence)
_MIN_SPAN_DAYS = 1 / 24
_READERS = 16
_COMMIT_BATCH = 4096  # commit records held at once
_SUMMARY_BATCH = 64  # run summaries held at once (each lists every partition its run planned)
#: Cloud Run functions' default vCPUs by memory (MiB), used when the price table leaves ``vcpus`` unset
_CLOUD_RUN_VCPUS = ((128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583), (2048, 1.0), (4096, 2.0),
                    (8192, 2.0), (16384, 4.0), (32768, 8.0))


# --------------------------------------------------------------------------------------------- prices
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionPrices(_Model):
    """One cloud's function plan: duration by memory (and vCPU where billed), invocations, free grants."""

    label: str
    gb_second: float = Field(ge=0, description="USD per GB-second of configured memory.")
    vcpu_second: float = Field(0.0, ge=0, description="USD per vCPU-second (Cloud Run functions).")
    vcpus: float | None = Field(None, gt=0, description="vCPUs of one instance; unset: derived from memory.")
    per_million_invocations: float = Field(ge=0)
    free_gb_seconds: float = Field(0.0, ge=0, description="Monthly free grant (per account).")
    free_vcpu_seconds: float = Field(0.0, ge=0)
    free_invocations: float = Field(0.0, ge=0)


class CloudPrices(_Model):
    """One object store class and its function plan, list prices in USD."""

    label: str
    region: str
    storage_gb_month: float = Field(ge=0)
    write_per_1000: float = Field(ge=0, description="PUT/POST/COPY (S3), Write (Azure), Class A (GCS).")
    list_per_1000: float = Field(ge=0, description="LIST (S3), List and Create Container (Azure), Class A (GCS).")
    read_per_1000: float = Field(ge=0, description="GET/HEAD (S3), Read (Azure), Class B (GCS).")
    multipart_extra_writes: int = Field(ge=0, description="Requests of a multipart upload besides its parts.")
    function: FunctionPrices


class ReadModel(_Model):
    """How many requests a run makes besides the objects it writes (what the engine does per run)."""

    memory_mb: int = Field(512, gt=0, description="Function memory for GB-seconds.")
    hint_every_links: int = Field(1, ge=1, description="The hint is rewritten once the chain moved this many "
                                  "links past it (1: whenever a run moved the chain).")
    hint_gets_per_partition_run: float = Field(1, ge=0, description="Planning reads every partition's hint.")
    probe_gets_per_pending_partition_run: float = Field(1, ge=0, description="GETs of the next commit key "
                                                        "when the partition had new records (plus one per "
                                                        "link the hint lags).")
    sweep_lists_per_written_partition_run: float = Field(1, ge=0, description="Orphan sweep of a partition "
                                                         "the run writes to.")
    topic_gets_per_topic_run: float = Field(1, ge=0, description="The topic identity (topic.json) read.")


class PriceTable(_Model):
    clouds: dict[str, CloudPrices]
    model: ReadModel = ReadModel()


#: The table of docs/pricing.md (a test keeps the two equal).  US regions, list prices, USD.
DEFAULT_PRICES: dict[str, Any] = {
    "clouds": {
        "s3": {
            "label": "S3 Standard", "region": "us-east-1",
            "storage_gb_month": 0.023, "write_per_1000": 0.005, "list_per_1000": 0.005, "read_per_1000": 0.0004,
            "multipart_extra_writes": 2,
            "function": {"label": "Lambda (x86)", "gb_second": 0.0000166667, "per_million_invocations": 0.20,
                         "free_gb_seconds": 400_000, "free_invocations": 1_000_000},
        },
        "azure_hot": {
            "label": "Azure Blob hot", "region": "East US, LRS",
            "storage_gb_month": 0.0208, "write_per_1000": 0.005, "list_per_1000": 0.005, "read_per_1000": 0.0004,
            "multipart_extra_writes": 1,
            "function": {"label": "Flex Consumption", "gb_second": 0.000026, "per_million_invocations": 0.40,
                         "free_gb_seconds": 100_000, "free_invocations": 250_000},
        },
        "azure_cool": {
            "label": "Azure Blob cool", "region": "East US, LRS",
            "storage_gb_month": 0.0152, "write_per_1000": 0.01, "list_per_1000": 0.005, "read_per_1000": 0.001,
            "multipart_extra_writes": 1,
            "function": {"label": "Flex Consumption", "gb_second": 0.000026, "per_million_invocations": 0.40,
                         "free_gb_seconds": 100_000, "free_invocations": 250_000},
        },
        "gcs": {
            "label": "GCS Standard", "region": "us-east1",
            "storage_gb_month": 0.020, "write_per_1000": 0.005, "list_per_1000": 0.005, "read_per_1000": 0.0004,
            "multipart_extra_writes": 2,
            "function": {"label": "Cloud Run functions", "gb_second": 0.0000025, "vcpu_second": 0.000024,
                         "per_million_invocations": 0.40, "free_gb_seconds": 360_000,
                         "free_vcpu_seconds": 180_000, "free_invocations": 2_000_000},
        },
    },
    "model": {"memory_mb": 512, "hint_every_links": 1, "hint_gets_per_partition_run": 1,
              "probe_gets_per_pending_partition_run": 1, "sweep_lists_per_written_partition_run": 1,
              "topic_gets_per_topic_run": 1},
}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; a null value removes the key (``clouds: {azure_cool: null}``)."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_prices(path: str | Path | None = None, *, memory_mb: int | None = None) -> PriceTable:
    """The default table, with ``path`` (YAML, the same keys) on top and ``memory_mb`` on top of that.

    Errors name the file and the key: a price typo must not silently become the default.
    """
    data: dict[str, Any] = DEFAULT_PRICES
    source = "built-in price table"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read price file: {exc.strerror}", source=source) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", source=source) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping (keys: clouds, model)", source=source)
        data = _merge(data, loaded or {})
    if memory_mb is not None:
        if memory_mb <= 0:
            raise ConfigError(f"must be a positive number of MiB, got {memory_mb}", source="flags",
                              field="--memory-mb")
        data = _merge(data, {"model": {"memory_mb": memory_mb}})
    try:
        table = PriceTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(first["msg"] + more, source=source, field=loc or None) from exc
    if not table.clouds:
        raise ConfigError("no cloud left to price", source=source, field="clouds")
    return table


def function_vcpus(prices: FunctionPrices, memory_mb: int) -> float:
    """vCPUs billed per instance: the table's value, else Cloud Run functions' default for the memory."""
    if prices.vcpus is not None:
        return prices.vcpus
    if prices.vcpu_second == 0:
        return 0.0
    for mib, vcpus in _CLOUD_RUN_VCPUS:
        if memory_mb <= mib:
            return vcpus
    return _CLOUD_RUN_VCPUS[-1][1]


# ------------------------------------------------------------------------------------------- results
@dataclass
class Holding:
    """Objects and bytes of one kind."""

    objects: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.objects += 1
        self.bytes += size


@dataclass
class Activity:
    """Writes (measured) and requests (modelled) over the window, for a partition, a day or the total."""

    segments: int = 0
    segment_bytes: int = 0
    commits: int = 0  # segment and gap records
    commit_bytes: int = 0
    other_objects: int = 0  # run summaries, snapshots, anchors, topic identities, orphans
    other_bytes: int = 0
    multipart_uploads: int = 0  # segments above 8 MiB ...
    multipart_parts: int = 0  # ... and their parts
    hint_writes: float = 0  # modelled
    reads: float = 0  # modelled GET-class
    lists: float = 0  # modelled LIST
    partition_runs: int = 0  # partitions planned, summed over runs (run summaries)
    written_partition_runs: int = 0  # of those, the ones that committed at least one link

    @property
    def objects_written(self) -> int:
        return self.segments + self.commits + self.other_objects

    @property
    def bytes_written(self) -> int:
        return self.segment_bytes + self.commit_bytes + self.other_bytes

    def write_requests(self, multipart_extra: int) -> float:
        """PUT-class requests: one per object, a multipart upload its parts plus ``multipart_extra``."""
        return (self.objects_written - self.multipart_uploads + self.multipart_parts
                + self.multipart_uploads * multipart_extra + self.hint_writes)

    def add(self, other: Activity) -> None:
        for name in Activity.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def record_other(self, size: int) -> None:
        self.other_objects += 1
        self.other_bytes += size

    def record_segment(self, size: int) -> None:
        self.segments += 1
        self.segment_bytes += size
        if size > MULTIPART_CHUNK:  # what the engine uploads in parts (backup._upload_and_commit)
            self.multipart_uploads += 1
            self.multipart_parts += math.ceil(size / MULTIPART_CHUNK)


@dataclass
class DayUsage(Activity):
    date: str = ""
    runs: int = 0
    run_seconds: float = 0.0
    gb_seconds: float = 0.0


@dataclass
class PartitionCost:
    topic: str
    partition: int
    stored: dict[str, Holding] = field(default_factory=dict)
    window: Activity = field(default_factory=Activity)
    #: requests per month (writes + lists + reads; a multipart upload as on the first priced cloud)
    #: and their cost per cloud, USD
    requests_per_month: float = 0.0
    usd_per_month: dict[str, float] = field(default_factory=dict)

    @property
    def stored_bytes(self) -> int:
        return sum(h.bytes for h in self.stored.values())


@dataclass
class CloudBill:
    """One cloud's monthly model: each line's quantity and USD."""

    cloud: str
    label: str
    region: str
    function_label: str
    storage_gb: float
    storage_usd: float
    write_requests: float
    write_usd: float
    list_requests: float
    list_usd: float
    read_requests: float
    read_usd: float
    invocations: float
    gb_seconds: float
    vcpu_seconds: float
    function_usd: float
    total_usd: float


@dataclass
class CostReport:
    storage: str
    generated_at: str
    window_days: int
    window_start: str
    #: days of history the month is extrapolated from: the window, or less if the backup is younger
    measured_days: float
    memory_mb: int
    hint_every_links: int
    stored: dict[str, Holding]
    partitions: list[PartitionCost]
    shared: Activity
    total: Activity
    runs: int
    run_seconds: float
    gb_seconds: float
    days: list[DayUsage]
    monthly: list[CloudBill]
    problems: list[str]
    #: what this report itself cost: objects listed, objects read
    objects_listed: int
    objects_read: int

    @property
    def stored_total(self) -> Holding:
        return Holding(sum(h.objects for h in self.stored.values()), sum(h.bytes for h in self.stored.values()))

    @property
    def month_factor(self) -> float:
        return MONTH_DAYS / self.measured_days

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["month_factor"] = self.month_factor
        doc["stored_total"] = asdict(self.stored_total)
        doc["measured"] = MEASURED
        doc["modelled"] = MODELLED
        return doc


MEASURED = ["stored objects and bytes (one listing)",
            "segments and commit records written per day, with their bytes (commit records' committed_at)",
            "run summaries, topic and group snapshots written per day (the time in their key)",
            "runs per day and run seconds (run summaries); GB-seconds = run seconds x memory"]
MODELLED = ["hint writes (the hint is overwritten: rewritten once the chain moved model.hint_every_links links "
            "past it)",
            "GET-class requests (per run: every partition's hint, a probe of the next commit key when the "
            "partition had new records plus one per link the hint lags, each topic's identity)",
            "LIST requests (one orphan sweep per partition a run writes to)",
            "multipart uploads (segments above 8 MiB: parts plus the cloud's extra requests)",
            "the month: the measured days' average times 30; function free grants applied"]


# --------------------------------------------------------------------------------------------- scan
_STAMP = r"(?P<stamp>\d{8}T\d{6}\.\d{6}Z)-(?P<run>[A-Za-z0-9]+)\.json"
_PARTITION_RE = re.compile(r"topics/([^/]+)/(\d+)/(.+)")
_SEGMENT_RE = re.compile(r"segments/(\d{20})-(\d{20})-([A-Za-z0-9]+)\.kbseg")
_COMMIT_RE = re.compile(r"commits/(\d{20})\.json")
_METADATA_RE = re.compile(r"topics/([^/]+)/metadata/" + _STAMP)
_RUN_RE = re.compile(r"runs/" + _STAMP)
_GROUPS_RE = re.compile(r"groups/" + _STAMP)
_TOPIC_ID_RE = re.compile(r"topics/([^/]+)/topic\.json")


_KINDS = ("segments", "commits", "hints", "anchors", "other partition objects", "run summaries",
          "topic snapshots", "group snapshots", "topic identities", "other")


def _kind_order(kind: str) -> int:
    return _KINDS.index(kind) if kind in _KINDS else len(_KINDS)


def _stamp_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def _iso_time(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class _Partition:
    stored: dict[str, Holding] = field(default_factory=lambda: defaultdict(Holding))
    commits: list[ObjectInfo] = field(default_factory=list)  # recent commit records
    segments: list[ObjectInfo] = field(default_factory=list)  # recent segments
    written: list[ObjectInfo] = field(default_factory=list)  # recent anchors, temporaries: dated by mtime


@dataclass
class _Inventory:
    """Every object under the prefix, counted by kind (one recursive listing).  Only objects listed
    since ``since`` are kept (the window needs them); the rest are counted, so memory follows the
    window, not the backup's age."""

    since: datetime
    first_seen: datetime  # the oldest commit or stamped document: how old the backup is
    partitions: dict[tuple[str, int], _Partition] = field(default_factory=lambda: defaultdict(_Partition))
    shared: dict[str, Holding] = field(default_factory=lambda: defaultdict(Holding))
    runs: list[tuple[datetime, str, ObjectInfo]] = field(default_factory=list)  # (finished, run id, object)
    stamped: list[tuple[datetime, ObjectInfo]] = field(default_factory=list)  # metadata, group snapshots
    identities: list[ObjectInfo] = field(default_factory=list)  # topic.json: dated by mtime
    listed: int = 0

    @classmethod
    def scan(cls, store: Store, since: datetime, now: datetime) -> _Inventory:
        inv = cls(since, now)
        for info in store.list(""):
            inv.listed += 1
            inv._classify(info)
        return inv

    def _classify(self, info: ObjectInfo) -> None:
        key = info.key
        m = _PARTITION_RE.fullmatch(key)
        if m and m.group(3).split("/", 1)[0] in {"segments", "commits", "head.json", "anchor.json"}:
            part = self.partitions[(decode_topic(m.group(1)), int(m.group(2)))]
            rest = m.group(3)
            recent = info.last_modified >= self.since
            if _SEGMENT_RE.fullmatch(rest):
                part.stored["segments"].add(info.size)
                if recent:
                    part.segments.append(info)
            elif _COMMIT_RE.fullmatch(rest):
                part.stored["commits"].add(info.size)
                self.first_seen = min(self.first_seen, info.last_modified)
                if recent:
                    part.commits.append(info)
            elif rest == "head.json":
                part.stored["hints"].add(info.size)
            else:  # the anchor; WebDAV create temporaries next to commit records; anything unexpected
                part.stored["anchors" if rest == "anchor.json" else "other partition objects"].add(info.size)
                if recent:
                    part.written.append(info)
            return
        if m := _RUN_RE.fullmatch(key):
            self.shared["run summaries"].add(info.size)
            ts = _stamp_time(m.group("stamp"))
            self.first_seen = min(self.first_seen, ts)
            if ts >= self.since:
                self.runs.append((ts, m.group("run"), info))
        elif (m := _METADATA_RE.fullmatch(key)) or (m := _GROUPS_RE.fullmatch(key)):
            self.shared["topic snapshots" if key.startswith("topics/") else "group snapshots"].add(info.size)
            ts = _stamp_time(m.group("stamp"))
            self.first_seen = min(self.first_seen, ts)
            if ts >= self.since:
                self.stamped.append((ts, info))
        elif _TOPIC_ID_RE.fullmatch(key):
            self.shared["topic identities"].add(info.size)
            if info.last_modified >= self.since:
                self.identities.append(info)
        else:  # restore progress, foreign objects: stored (and billed), but not written by backups
            self.shared["other"].add(info.size)


def _read_json(store: Store, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFound:  # removed between the listing and the read (an operator's expiry)
        return None


def _parse_run(raw: bytes, key: str) -> tuple[float, dict[tuple[str, int], bool], str | None]:
    """A run summary's duration, and for each partition it planned whether that partition had new
    records (``target_offset`` past the chain's end).  A damaged summary still counts as a run, of 0 s."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return 0.0, {}, f"{key}: unreadable run summary ({exc}); counted with 0 s"
    problem = None
    try:
        seconds = float(doc.get("duration_seconds") or 0.0)
    except (TypeError, ValueError):
        seconds, problem = 0.0, f"{key}: duration_seconds is not a number; counted with 0 s"
    pending: dict[tuple[str, int], bool] = {}
    for p in doc.get("partitions") or ():
        try:
            tp = (str(p["topic"]), int(p["partition"]))
        except (KeyError, TypeError, ValueError):
            continue
        start, target = p.get("start_offset"), p.get("target_offset")
        # new records below the run's snapshot (a new partition's chain starts at its anchor, >= 0)
        pending[tp] = bool(p.get("segments")) or bool(p.get("gaps")) or (
            isinstance(target, int) and target > (start if isinstance(start, int) else 0))
    return seconds, pending, problem


# ------------------------------------------------------------------------------------------ analysis
def analyze(store: Store, *, days: int = 7, prices: PriceTable | None = None, now: datetime | None = None,
            readers: int = _READERS) -> CostReport:
    """Measure the last ``days`` days of a backup and model its monthly bill on every priced cloud.

    Cost of the report itself: one listing of the prefix (one LIST per 1 000 objects), one GET per
    commit record written in the window and one per run summary in the window, ``readers`` at a time.
    """
    if days < 1:
        raise ConfigError(f"must be at least 1, got {days}", field="days")
    prices = prices or load_prices()
    model = prices.model
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    memory_gb = model.memory_mb / 1024

    def in_window(ts: datetime) -> bool:
        return start <= ts <= now

    # A commit record is created after its segment and never rewritten, so its listing time bounds
    # its commit time from above: records listed before the window (less a day of clock skew) are
    # neither kept nor read.
    inv = _Inventory.scan(store, start - _DAY, now)
    problems: list[str] = []
    stored: dict[str, Holding] = defaultdict(Holding)
    for part in inv.partitions.values():
        for kind, h in part.stored.items():
            stored[kind].objects += h.objects
            stored[kind].bytes += h.bytes
    for kind, h in inv.shared.items():
        stored[kind].objects += h.objects
        stored[kind].bytes += h.bytes

    day_rows: dict[date, DayUsage] = {}
    d = start.date()
    while d <= now.date():
        day_rows[d] = DayUsage(date=d.isoformat())
        d += _DAY

    def day(ts: datetime) -> DayUsage:
        return day_rows[ts.astimezone(UTC).date()]

    first_seen = inv.first_seen
    per_part: dict[tuple[str, int], Activity] = defaultdict(Activity)
    # (topic, partition) -> run_id -> [links committed, time of the first]
    links: dict[tuple[str, int], dict[str, list[Any]]] = defaultdict(dict)
    named: set[str] = set()  # segment keys that a commit record names
    wanted = [(tp, info) for tp, part in inv.partitions.items() for info in part.commits]
    run_keys = sorted(((ts, run_id, info) for ts, run_id, info in inv.runs if in_window(ts)),
                      key=lambda r: (r[0], r[1]))
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="kb-cost") as pool:
        for i in range(0, len(wanted), _COMMIT_BATCH):
            batch = wanted[i:i + _COMMIT_BATCH]
            for (tp, info), raw in zip(batch, pool.map(lambda w: _read_json(store, w[1].key), batch), strict=True):
                if raw is None:
                    continue
                try:
                    rec = CommitRecord.from_json(raw, key=info.key)
                except CorruptSegmentError as exc:
                    problems.append(f"{info.key}: {exc}")
                    continue
                if rec.segment:
                    named.add(f"{info.key.rsplit('/commits/', 1)[0]}/{rec.segment}")
                when = _iso_time(rec.committed_at)
                if when is None:
                    problems.append(f"{info.key}: committed_at {rec.committed_at!r} is not an ISO time; "
                                    "listing time used")
                    when = info.last_modified
                first_seen = min(first_seen, when)
                if not in_window(when):
                    continue
                for act in (per_part[tp], day(when)):
                    act.commits += 1
                    act.commit_bytes += info.size
                    if rec.kind == "segment":
                        act.record_segment(rec.size)
                entry = links[tp].setdefault(rec.run_id, [0, when])
                entry[0] += 1
                entry[1] = min(entry[1], when)

    # Objects dated by their listing time: anchors, temporaries, orphan segments, topic identities.
    for tp, part in inv.partitions.items():
        for info in [*part.written, *(seg for seg in part.segments if seg.key not in named)]:
            if in_window(info.last_modified):
                for act in (per_part[tp], day(info.last_modified)):
                    act.record_other(info.size)
    shared = Activity()
    for info in inv.identities:
        if in_window(info.last_modified):
            for act in (shared, day(info.last_modified)):
                act.record_other(info.size)
    for ts, info in [*inv.stamped, *((ts, info) for ts, _id, info in inv.runs)]:
        if in_window(ts):
            for act in (shared, day(ts)):
                act.record_other(info.size)

    # Runs, in time order: durations, and the partitions each one planned.  Summaries are read a
    # batch at a time: with thousands of partitions each is large, and only the hints' lag is kept.
    planner = _Planner(model, per_part, day)
    by_run: dict[str, list[tuple[tuple[str, int], int, datetime]]] = defaultdict(list)
    for tp, of_tp in links.items():
        for run_id, (n, first) in of_tp.items():
            by_run[run_id].append((tp, int(n), first))
    summarized = {run_id for _ts, run_id, _info in run_keys}
    # runs known only by their commits (killed before writing a summary): they planned what they wrote
    unsummarized = sorted((first, tp, n) for run_id, entries in by_run.items() if run_id not in summarized
                          for tp, n, first in entries)
    next_unsummarized = 0
    runs = 0
    run_seconds = 0.0
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="kb-cost") as pool:
        for i in range(0, len(run_keys), _SUMMARY_BATCH):
            summaries = run_keys[i:i + _SUMMARY_BATCH]
            raws = list(pool.map(lambda r: _read_json(store, r[2].key), summaries))
            for (ts, run_id, info), raw in zip(summaries, raws, strict=True):
                if raw is None:
                    continue
                while next_unsummarized < len(unsummarized) and unsummarized[next_unsummarized][0] <= ts:
                    first, tp, n = unsummarized[next_unsummarized]
                    planner.plan(tp, first, n, True)
                    next_unsummarized += 1
                seconds, pending, problem = _parse_run(raw, info.key)
                if problem:
                    problems.append(problem)
                runs += 1
                run_seconds += seconds
                row = day(ts)
                row.runs += 1
                row.run_seconds += seconds
                row.gb_seconds += seconds * memory_gb
                topic_gets = len({t for t, _p in pending}) * model.topic_gets_per_topic_run
                shared.reads += topic_gets
                row.reads += topic_gets
                written = {tp: (n, first) for tp, n, first in by_run.get(run_id, ())}
                for tp, had_new in pending.items():
                    n = written.pop(tp, (0, ts))[0]
                    planner.plan(tp, ts, n, had_new or n > 0)
                for tp, (n, first) in written.items():  # committed, yet missing from its own summary
                    planner.plan(tp, first, n, True)
    for first, tp, n in unsummarized[next_unsummarized:]:
        planner.plan(tp, first, n, True)

    partitions: list[PartitionCost] = []
    for tp in sorted(set(inv.partitions) | set(per_part)):
        held = inv.partitions[tp].stored
        stored_here = {k: Holding(held[k].objects, held[k].bytes) for k in sorted(held, key=_kind_order)}
        partitions.append(PartitionCost(tp[0], tp[1], stored_here, per_part[tp]))
    total = Activity()
    total.add(shared)
    for pc in partitions:
        total.add(pc.window)

    span = max(_MIN_SPAN_DAYS, min(float(days), (now - first_seen).total_seconds() / 86400))
    factor = MONTH_DAYS / span
    report = CostReport(
        storage=store.display, generated_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        window_days=days, window_start=start.isoformat(timespec="seconds").replace("+00:00", "Z"),
        measured_days=span, memory_mb=model.memory_mb, hint_every_links=model.hint_every_links,
        stored={k: stored[k] for k in sorted(stored, key=_kind_order)}, partitions=partitions, shared=shared,
        total=total, runs=runs,
        run_seconds=run_seconds, gb_seconds=run_seconds * memory_gb, days=list(day_rows.values()),
        monthly=[], problems=problems, objects_listed=inv.listed, objects_read=len(wanted) + len(run_keys))
    for name, cloud in prices.clouds.items():
        report.monthly.append(_bill(name, cloud, report))
        for pc in partitions:
            w = pc.window
            pc.usd_per_month[name] = factor * (w.write_requests(cloud.multipart_extra_writes) * cloud.write_per_1000
                                               + w.lists * cloud.list_per_1000 + w.reads * cloud.read_per_1000) / 1000
    extra = next(iter(prices.clouds.values())).multipart_extra_writes
    for pc in partitions:
        w = pc.window
        pc.requests_per_month = factor * (w.write_requests(extra) + w.lists + w.reads)
    return report


class _Planner:
    """Hint writes, GETs and LISTs of each partition, run by run, following the hint's lag.

    Fed in time order; keeps one number per partition (links the hint is behind the chain's end,
    0 at the start of the window).
    """

    def __init__(self, model: ReadModel, per_part: dict[tuple[str, int], Activity],
                 day: Callable[[datetime], Activity]) -> None:
        self.model = model
        self.per_part = per_part
        self.day = day
        self.lag: dict[tuple[str, int], int] = defaultdict(int)

    def plan(self, tp: tuple[str, int], ts: datetime, links: int, had_new: bool) -> None:
        """One run planned ``tp``: it read the hint, probed past it if there was anything new or
        the hint lagged, swept and committed ``links`` links if it wrote, then maybe rewrote the hint."""
        m = self.model
        lag = self.lag[tp]
        reads = m.hint_gets_per_partition_run
        if had_new or lag:
            reads += m.probe_gets_per_pending_partition_run + lag
        lists = m.sweep_lists_per_written_partition_run if links else 0
        hint = 0
        if links:
            lag += links
            if lag >= m.hint_every_links:
                hint, lag = 1, 0
        self.lag[tp] = lag
        for act in (self.per_part[tp], self.day(ts)):
            act.reads += reads
            act.lists += lists
            act.hint_writes += hint
            act.partition_runs += 1
            act.written_partition_runs += 1 if links else 0


def _bill(name: str, cloud: CloudPrices, report: CostReport) -> CloudBill:
    f = report.month_factor
    t = report.total
    fn = cloud.function
    storage_gb = report.stored_total.bytes / GB
    writes = t.write_requests(cloud.multipart_extra_writes) * f
    lists, reads = t.lists * f, t.reads * f
    invocations = report.runs * f
    gb_seconds = report.gb_seconds * f
    vcpu_seconds = report.run_seconds * function_vcpus(fn, report.memory_mb) * f
    function_usd = (max(0.0, gb_seconds - fn.free_gb_seconds) * fn.gb_second
                    + max(0.0, vcpu_seconds - fn.free_vcpu_seconds) * fn.vcpu_second
                    + max(0.0, invocations - fn.free_invocations) * fn.per_million_invocations / 1e6)
    bill = CloudBill(
        cloud=name, label=cloud.label, region=cloud.region, function_label=fn.label,
        storage_gb=storage_gb, storage_usd=storage_gb * cloud.storage_gb_month,
        write_requests=writes, write_usd=writes * cloud.write_per_1000 / 1000,
        list_requests=lists, list_usd=lists * cloud.list_per_1000 / 1000,
        read_requests=reads, read_usd=reads * cloud.read_per_1000 / 1000,
        invocations=invocations, gb_seconds=gb_seconds, vcpu_seconds=vcpu_seconds, function_usd=function_usd,
        total_usd=0.0)
    bill.total_usd = bill.storage_usd + bill.write_usd + bill.list_usd + bill.read_usd + bill.function_usd
    return bill


# ------------------------------------------------------------------------------------------ output
def _n(x: float) -> str:
    return f"{x:,.0f}"


def _usd(x: float) -> str:
    """Dollars to the cent; below a dollar to 4 decimals, so a small backup's figures still compare."""
    if x == 0 or x >= 0.995:
        return f"{x:,.2f}"
    return f"{x:.4f}" if x >= 0.00005 else "<0.0001"


def format_report(report: CostReport, *, top: int = 10) -> str:
    """The human table: stored now, per day, the month per cloud, the partitions that cost most."""
    out: list[str] = []
    st = report.stored_total
    out.append(f"Cost of {report.storage}: last {report.window_days} days from {report.window_start} "
               f"({report.measured_days:.2f} days of history measured)")
    out.append("")
    out.append(f"Stored now (measured): {len(report.partitions)} partitions, {human_bytes(st.bytes)} "
               f"in {_n(st.objects)} objects")
    for kind, h in report.stored.items():
        out.append(f"  {kind:<24}{_n(h.objects):>12} objects {human_bytes(h.bytes):>12}")
    out.append("")
    out.append(f"Per day: runs, run seconds, GB-s at {report.memory_mb} MiB and writes are measured; "
               "hints*, GET* and LIST* are modelled")
    out.append(f"  {'date':<10} {'runs':>6} {'run s':>9} {'GB-s':>9} {'segments':>9} {'commits':>9} "
               f"{'other':>7} {'written':>10} {'hints*':>8} {'GET*':>10} {'LIST*':>9}")
    for r in report.days:
        out.append(f"  {r.date:<10} {r.runs:>6} {r.run_seconds:>9.1f} {r.gb_seconds:>9.1f} {r.segments:>9} "
                   f"{r.commits:>9} {r.other_objects:>7} {human_bytes(r.bytes_written):>10} "
                   f"{_n(r.hint_writes):>8} {_n(r.reads):>10} {_n(r.lists):>9}")
    out.append("")
    out.append(f"Monthly model, USD ({MONTH_DAYS} days at the measured rate x{report.month_factor:.2f}; list "
               "prices of docs/pricing.md or --prices)")
    bills = report.monthly
    width = max([16, *(len(b.label) + 2 for b in bills)])
    out.append(f"  {'':<22}{'per month':>16}" + "".join(f"{b.label:>{width}}" for b in bills))
    if bills:
        b0 = bills[0]
        rows: list[tuple[str, str, list[float]]] = [
            ("storage", f"{b0.storage_gb:.3f} GB", [b.storage_usd for b in bills]),
            ("PUT-class requests", _n(b0.write_requests), [b.write_usd for b in bills]),
            ("LIST requests*", _n(b0.list_requests), [b.list_usd for b in bills]),
            ("GET-class requests*", _n(b0.read_requests), [b.read_usd for b in bills]),
            ("function", f"{_n(b0.gb_seconds)} GB-s", [b.function_usd for b in bills]),
            ("total", "", [b.total_usd for b in bills]),
        ]
        for name, quantity, cells in rows:
            out.append(f"  {name:<22}{quantity:>16}" + "".join(f"{_usd(c):>{width}}" for c in cells))
        out.append(f"  function: {_n(b0.invocations)} invocations a month on "
                   + ", ".join(dict.fromkeys(b.function_label for b in bills))
                   + "; USD after the monthly free grants")
    out.append("")
    ranked = sorted(report.partitions, key=lambda p: (-p.requests_per_month, p.topic, p.partition))[:top]
    if ranked:
        out.append(f"Top {len(ranked)} partitions by requests a month (USD of their requests)")
        out.append(f"  {'partition':<32} {'requests':>12} {'writes':>10} {'stored':>10}"
                   + "".join(f"{b.label:>{width}}" for b in bills))
        f = report.month_factor
        for p in ranked:
            name = f"{p.topic}[{p.partition}]"
            out.append(f"  {name:<32.32} {_n(p.requests_per_month):>12} {_n(p.window.objects_written * f):>10} "
                       f"{human_bytes(p.stored_bytes):>10}"
                       + "".join(f"{_usd(p.usd_per_month.get(b.cloud, 0.0)):>{width}}" for b in bills))
        out.append("")
    out.append("Measured: " + "; ".join(MEASURED) + ".")
    out.append("* Modelled: " + "; ".join(MODELLED).replace("model.hint_every_links",
                                                          str(report.hint_every_links)) + ".")
    out.append(f"This report listed {_n(report.objects_listed)} objects and read {_n(report.objects_read)}.")
    for problem in report.problems[:20]:
        out.append(f"warning: {problem}")
    if len(report.problems) > 20:
        out.append(f"warning: ... and {len(report.problems) - 20} more")
    return "\n".join(out)
