"""Fixtures of the fault tests: a private broker behind Toxiproxy, storage behind Toxiproxy and a
throttling proxy, one seeded source topic, and the checks every fault test ends with.

Why a private broker: these tests stop and restart Kafka, and the shared broker (``dev/kafka.py``
on port 39092) is used by other sessions at the same time.  The private one runs from its own
cache directory (``KAFKA_BACKUP_CACHE``; the broker's jars are linked from the shared cache, so
nothing is downloaded) on free ports, and advertises the Toxiproxy listener in front of it: Kafka
clients connect wherever the broker's metadata says, so that is the only way to put every
connection of the engine (and of the tests' own producers and consumers) through the proxy.

The source topic is seeded once per session and only ever read, so every test backs up the same
records into its own storage prefix and restores them into its own target topic.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka_backup import RunResult, Settings, run_backup
from kafka_backup.catalog import PartitionChain
from kafka_backup.report import verify
from kafka_backup.restore import RestoreOptions, RestoreResult, run_restore
from kafka_backup.segment import SegmentReader
from kafka_backup.storage import Store, open_store

from dev import toxiproxy as _toxiproxy
from dev._common import ROOT
from dev.toxiproxy import Toxiproxy
from tests.conftest import _service
from tests.faults.throttle_proxy import ThrottleProxy
from tests.integration.conftest import Row, consume_all, rows_of

PARTITIONS = 2
RECORDS_PER_PARTITION = 1000
#: Small segments and fetches, so that a fault lands in the middle of many uploads and fetches.
BACKUP_KNOBS: dict[str, Any] = {"segment_max_bytes": 24 << 10, "partition_fetch_max_bytes": 16 << 10,
                                "fetch_max_bytes": 32 << 10}
#: What a run may overrun its deadline by: the one in-flight call's floor (1 s) and scheduling on
#: a loaded 2-core machine.
DEADLINE_SLACK_S = 3.0


# ------------------------------------------------------------------------------ ports, services
def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the broker needs port, port+1, port+2)."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(41000, 59000)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range found")


@pytest.fixture(scope="session")
def toxiproxy() -> Iterator[Toxiproxy]:
    for _endpoint in _service("toxiproxy"):
        yield _toxiproxy.SERVICE


@dataclass
class Proxy:
    """One Toxiproxy proxy: ``address`` is where clients connect instead of the service."""

    client: Toxiproxy
    name: str
    address: str
    _timers: list[threading.Timer] = field(default_factory=list)

    def toxic(self, kind: str, *, stream: str = "downstream", **attributes: int) -> str:
        return self.client.add_toxic(self.name, kind, attributes, stream=stream)

    def down(self) -> None:
        self.client.set_enabled(self.name, False)

    def up(self) -> None:
        self.client.set_enabled(self.name, True)

    def later(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``seconds`` (e.g. bring the proxy back up) on a timer thread."""
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def clear(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.client.clear(self.name)


def _proxy(client: Toxiproxy, kind: str, upstream: str) -> Iterator[Proxy]:
    port = free_ports(1)
    name = f"kb-{kind}-{uuid.uuid4().hex[:8]}"
    client.create_proxy(name, port, upstream)
    try:
        yield Proxy(client, name, f"127.0.0.1:{port}")
    finally:
        client.delete_proxy(name)


# ------------------------------------------------------------------------------ private broker
@dataclass
class PrivateKafka:
    """A broker of this session only, reached through ``proxy``; :meth:`restart` keeps its data."""

    proxy: Proxy
    env: dict[str, str]
    restarts: int = 0
    #: (monotonic time the process was gone, monotonic time it answered again) per restart
    outages: list[tuple[float, float]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    def _services(self, action: str, **extra: str) -> None:
        env = {**os.environ, **self.env, **extra}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # set by the shared broker's fixture; it would be "external"
        proc = subprocess.run([sys.executable, "-m", "dev.services", action, "kafka"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"private broker {action} failed: {proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        self._services("start", KAFKA_KEEP_DATA="1" if self.restarts else "0")

    def stop(self) -> None:
        self._services("stop")

    def restart(self) -> float:
        """Stop the broker process (SIGTERM, a controlled shutdown) and start it on the same data;
        returns how long Kafka was away."""
        t0 = time.monotonic()
        self.restarts += 1
        self.stop()
        gone = time.monotonic()
        self.start()
        self.outages.append((gone, time.monotonic()))
        return time.monotonic() - t0


@pytest.fixture(scope="session")
def private_kafka(toxiproxy: Toxiproxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    from dev.kafka import SERVICE as shared_kafka

    shared_kafka.install()  # the jars, once, into the shared cache; the private cache links them
    cache = tmp_path_factory.mktemp("private-kafka-cache")
    (cache / "kafka").mkdir()
    (cache / "kafka" / shared_kafka.version).symlink_to(shared_kafka.home, target_is_directory=True)
    port = free_ports(3)
    for proxy in _proxy(toxiproxy, "kafka", f"127.0.0.1:{port}"):
        env = {"KAFKA_BACKUP_CACHE": str(cache), "KAFKA_PORT": str(port),
               "KAFKA_ADVERTISED_PORT": proxy.address.rsplit(":", 1)[1], "KAFKA_SECURE_PORT": str(port + 2)}
        broker = PrivateKafka(proxy, env)
        broker.start()
        try:
            yield broker
        finally:
            proxy.clear()
            broker.stop()


@pytest.fixture
def kafka_proxy(private_kafka: PrivateKafka) -> Iterator[Proxy]:
    """The proxy in front of the private broker, cleared (no toxics, enabled) after each test."""
    private_kafka.proxy.clear()
    yield private_kafka.proxy
    private_kafka.proxy.clear()


# ------------------------------------------------------------------------------ the source topic
@dataclass(frozen=True)
class Source:
    bootstrap: str
    topic: str
    rows: dict[int, list[Row]]  # partition -> every record, as the consumer returns it

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.rows.values())


@pytest.fixture(scope="session")
def source(private_kafka: PrivateKafka) -> Source:
    """One topic, seeded once: keys, ~300-byte values, headers, a tombstone per partition."""
    topic = f"faults-src-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=private_kafka.bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1,
                                     "configs": {"retention.ms": "-1"}}}, wait_for_metadata=True)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=private_kafka.bootstrap, linger_ms=20, batch_size=8 << 10,
                             enable_idempotence=True)
    rnd = random.Random(13)
    try:
        for i in range(RECORDS_PER_PARTITION * PARTITIONS):
            p = i % PARTITIONS
            value = None if i in (100, 101) else bytes(rnd.getrandbits(8) for _ in range(60)) * 5
            producer.send(topic, key=b"k%06d" % i, value=value, partition=p,
                          headers=[("n", str(i).encode()), ("dup", b"a"), ("dup", b"b")])
        producer.flush()
    finally:
        producer.close()
    rows = {p: consume_all(private_kafka.bootstrap, topic, p) for p in range(PARTITIONS)}
    assert all(len(r) == RECORDS_PER_PARTITION for r in rows.values()), {p: len(r) for p, r in rows.items()}
    return Source(private_kafka.bootstrap, topic, rows)


# ------------------------------------------------------------------------------ storage
@pytest.fixture(scope="session")
def s3_bucket(localstack_service: dict[str, str]) -> tuple[str, str]:
    """(LocalStack host:port, a fresh bucket)."""
    import boto3  # type: ignore[import-untyped]

    endpoint = localstack_service.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    bucket = f"kb-faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return endpoint.split("://", 1)[1].rstrip("/"), bucket


@pytest.fixture(scope="session")
def azure_container(azurite_service: dict[str, str]) -> tuple[str, str]:
    """(Azurite host:port, a fresh container)."""
    from dev.azurite import create_container

    url = azurite_service.get("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:10000")
    container = f"kb-faults-{uuid.uuid4().hex[:10]}"
    create_container(container, url)
    return url.split("://", 1)[1].rstrip("/"), container


def s3_url(endpoint: str, bucket: str, prefix: str, **query: Any) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return (f"s3://{bucket}/{prefix}?endpoint=http://{endpoint}&region=us-east-1&path_style=true&allow_http=true"
            f"&access_key=test&secret_key=test{extra}")


def azure_url(endpoint: str, container: str, prefix: str, **query: Any) -> str:
    """Shared-key access to Azurite's well-known account at ``endpoint`` (a proxy), not through
    ``use_emulator`` (which takes its address from AZURITE_BLOB_STORAGE_URL only)."""
    from dev.azurite import ACCOUNT, ACCOUNT_KEY

    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return (f"az://{container}/{prefix}?endpoint=http://{endpoint}/{ACCOUNT}&account_name={ACCOUNT}"
            f"&account_key={ACCOUNT_KEY.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}"
            f"&allow_http=true{extra}")


@pytest.fixture(scope="session")
def s3_toxi(toxiproxy: Toxiproxy, s3_bucket: tuple[str, str]) -> Iterator[Proxy]:
    yield from _proxy(toxiproxy, "s3", s3_bucket[0])


@pytest.fixture(scope="session")
def azure_toxi(toxiproxy: Toxiproxy, azure_container: tuple[str, str]) -> Iterator[Proxy]:
    yield from _proxy(toxiproxy, "azure", azure_container[0])


@pytest.fixture(scope="session")
def throttle(s3_bucket: tuple[str, str]) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(s3_bucket[0]) as proxy:
        yield proxy


@dataclass
class StorageUnderFault:
    """A fresh backup location reached through a proxy that the test can break."""

    name: str
    url: str
    proxy: Proxy | None = None
    throttle: ThrottleProxy | None = None

    def store(self) -> Store:
        return open_store(self.url)


@pytest.fixture
def fresh_prefix() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


def storage_via(kind: str, request: pytest.FixtureRequest, prefix: str, **query: Any) -> StorageUnderFault:
    """``kind``: s3 or azure through Toxiproxy, s3-throttle through the throttling proxy, file."""
    if kind == "s3":
        proxy: Proxy = request.getfixturevalue("s3_toxi")
        proxy.clear()
        request.addfinalizer(proxy.clear)
        return StorageUnderFault(kind, s3_url(proxy.address, request.getfixturevalue("s3_bucket")[1], prefix, **query),
                                 proxy=proxy)
    if kind == "azure":
        proxy = request.getfixturevalue("azure_toxi")
        proxy.clear()
        request.addfinalizer(proxy.clear)
        container = request.getfixturevalue("azure_container")[1]
        return StorageUnderFault(kind, azure_url(proxy.address, container, prefix, **query), proxy=proxy)
    if kind == "s3-throttle":
        throttle: ThrottleProxy = request.getfixturevalue("throttle")
        throttle.clear()
        request.addfinalizer(throttle.clear)
        bucket = request.getfixturevalue("s3_bucket")[1]
        return StorageUnderFault(kind, s3_url(throttle.url.split("://", 1)[1], bucket, prefix, **query),
                                 throttle=throttle)
    assert kind == "file"
    tmp: Path = request.getfixturevalue("tmp_path")
    return StorageUnderFault(kind, f"file://{tmp / prefix}")


# ------------------------------------------------------------------------------ runs and checks
def backup_settings(src: Source, url: str, **backup: Any) -> Settings:
    return Settings.model_validate({
        "kafka": {"bootstrap_servers": src.bootstrap, "request_timeout_seconds": 10,
                  "connect_timeout_seconds": 10},
        "storage": {"url": url},  # not a dumped model: its url is redacted (secrets as ***)
        "backup": {"topics": [src.topic], **BACKUP_KNOBS, **backup},
    })


@dataclass
class Timed:
    result: RunResult
    seconds: float


def timed_backup(settings: Settings, **kwargs: Any) -> Timed:
    t0 = time.monotonic()
    result = run_backup(settings, raise_on_error=False, **kwargs)
    return Timed(result, time.monotonic() - t0)


def on_progress(fraction: float, action: Callable[[], object], total: int) -> Callable[[str, int, int], None]:
    """A progress callback that runs ``action`` once, when ``fraction`` of ``total`` offsets are read."""
    seen: dict[str, int] = {}
    fired = threading.Event()

    def progress(label: str, pos: int, _target: int) -> None:
        seen[label] = pos
        if not fired.is_set() and sum(seen.values()) >= fraction * total:
            fired.set()
            action()

    return progress


def committed_prefix_intact(store: Store, src: Source) -> dict[int, int]:
    """Whatever is committed is a gap-free prefix of the source, byte-exact; returns the chain ends.

    This is "stops early with what it committed intact, never commits a segment whose bytes are
    not all stored, never skips an offset": the chain is walked from offset 0 without a jump, every
    committed segment is read back against the SHA-256 its commit record holds, and its decoded
    records (offsets included) equal the source's.
    """
    ends = {}
    for p, rows in src.rows.items():
        chain = PartitionChain(store, src.topic, p)
        pos = 0
        got: list[Row] = []
        for link in chain.walk(0):
            assert link.kind == "segment" and link.segment, "no retention here: a gap would be invented"
            assert link.start == pos, f"partition {p}: chain jumps from {pos} to {link.start}"
            key = f"{chain.base}/{link.segment}"
            got.extend(rows_of(list(SegmentReader.from_bytes(store.get(key), key=key,
                                                              expected_sha256=link.sha256).records())))
            pos = link.end
        assert got == [r for r in rows if r[0] < pos], f"partition {p}: committed records differ from the source"
        ends[p] = pos
    return ends


def restored_equals_source(src: Source, url: str, *, target: str | None = None) -> RestoreResult:
    """A full restore into a new topic; the target holds exactly the source's records, in order."""
    target = target or f"{src.topic}-r{uuid.uuid4().hex[:6]}"
    result = run_restore(backup_settings(src, url), RestoreOptions(topic=src.topic, to_topic=target))
    assert_target_equals_source(src, target)
    return result


def assert_target_equals_source(src: Source, target: str) -> int:
    """Every partition of ``target`` holds the source partition's records (key, value, headers,
    timestamp), in order, each exactly once; returns how many were compared."""
    compared = 0
    for p, rows in src.rows.items():
        got = consume_all(src.bootstrap, target, p)
        want = [r[1:] for r in rows]
        assert want, "the comparison must not be vacuous"
        assert len(got) == len(want), f"partition {p}: {len(got)} records restored, {len(want)} in the source"
        assert [r[1:] for r in got] == want, f"partition {p}: restored records differ (lost, duplicated or reordered)"
        compared += len(got)
    return compared


def complete_and_exact(src: Source, url: str) -> str:
    """After the fault: the next run completes, verify passes (every segment re-read against its
    checksums, the chain without hole or overlap) and covers exactly the source's offsets, and a
    full restore equals the source.  Returns what was compared, for the report table."""
    after = timed_backup(backup_settings(src, url))
    assert after.result.ok and after.result.stop_reason == "complete", after.result.summary()
    assert after.result.lag == 0
    report = verify(open_store(url), [src.topic])
    assert report.ok, [f"{p.key}: {p.message}" for p in report.problems]
    covered = {s.partition: (s.start_offset, s.end_offset, s.records, len(s.gaps)) for s in report.partitions}
    assert covered == {p: (0, len(rows), len(rows), 0) for p, rows in src.rows.items()}, covered
    ends = {p: len(rows) for p, rows in src.rows.items()}
    target = f"{src.topic}-r{uuid.uuid4().hex[:6]}"
    run_restore(backup_settings(src, url), RestoreOptions(topic=src.topic, to_topic=target))
    restored = assert_target_equals_source(src, target)
    return f"source {src.count} = backup {sum(ends.values())} = restore {restored}"


def outcome(run: Timed, ends: dict[int, int], src: Source) -> str:
    """One phrase for the report: how the run under the fault ended and what it had committed."""
    r = run.result
    committed = sum(ends.values())
    state = "completed" if r.ok and r.stop_reason == "complete" else (
        f"stopped early ({r.stop_reason})" if r.ok else f"{len(r.errors)} partition(s) failed")
    return f"{state}, exit {int(r.exit_code)}, {committed}/{src.count} committed intact"


def engine_records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("kafka_backup") and r.levelno >= level]


# ------------------------------------------------------------------------------ the report table
#: One row per test: fault, phase, outcome, seconds, records compared (printed after the session).
FAULT_TABLE: list[tuple[str, str, str, str, str]] = []


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Callable[..., None]:
    def add(fault: str, phase: str, outcome: str, seconds: float, records: str) -> None:
        FAULT_TABLE.append((fault, phase, outcome, f"{seconds:.1f}", records))
    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_TABLE:
        return
    terminalreporter.section("faults: fault x phase x outcome")
    terminalreporter.write_line("| fault | phase | outcome of the run under the fault | s | records compared after |")
    terminalreporter.write_line("|---|---|---|---|---|")
    for row in FAULT_TABLE:
        terminalreporter.write_line("| " + " | ".join(row) + " |")
