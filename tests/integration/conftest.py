"""Helpers for tests against the real broker: unique topics, producing, reading back, settings."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka_backup.config import Settings, storage_from_url
from kafka_backup.segment import Record

pytestmark = pytest.mark.integration

# (offset, timestamp, timestamp_type, key, value, headers)
Row = tuple[int, int, int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


@pytest.fixture(scope="session")
def admin(bootstrap_servers: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    yield client
    client.close()


@pytest.fixture
def make_topic(admin: KafkaAdminClient) -> Callable[..., str]:
    def make(partitions: int = 1, configs: dict[str, str] | None = None, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        # retention.ms=-1: test records carry old timestamps, which time-based retention would delete
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                    "configs": {"retention.ms": "-1", **(configs or {})}}},
                            wait_for_metadata=True)
        return name

    return make


@pytest.fixture
def producer(bootstrap_servers: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5, max_request_size=4 << 20)
    yield p
    p.close()


def settings(bootstrap: str, storage_url: str, topics: list[str], **backup: Any) -> Settings:
    return Settings.model_validate({
        "kafka": {"bootstrap_servers": bootstrap},
        "storage": storage_from_url(storage_url).model_dump(),
        "backup": {"topics": topics, **backup},
    })


def consume_all(bootstrap: str, topic: str, partition: int, *, isolation: str = "read_committed") -> list[Row]:
    """Every record of one partition as the Kafka consumer returns it (read_committed)."""
    tp = TopicPartition(topic, partition)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation,
                      max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    c.assign([tp])
    end = c.end_offsets([tp])[tp]
    c.seek_to_beginning(tp)
    rows: list[Row] = []
    deadline = time.monotonic() + 60
    while c.position(tp) < end and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            rows.extend((r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(r.headers)) for r in recs)
    c.close()
    return rows


def rows_of(records: list[Record]) -> list[Row]:
    return [(r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(r.headers)) for r in records]


def backed_up_rows(store: Any, topic: str, partition: int) -> list[Row]:
    """Every record of a partition's committed chain, decoded with the segment reader."""
    from kafka_backup.catalog import PartitionChain
    from kafka_backup.segment import SegmentReader

    chain = PartitionChain(store, topic, partition)
    out: list[Record] = []
    for rec in chain.walk():
        if rec.kind == "segment" and rec.segment:
            key = f"{chain.base}/{rec.segment}"
            out.extend(SegmentReader.from_bytes(store.get(key), key=key, expected_sha256=rec.sha256).records())
    return rows_of(out)


def chain_ranges(store: Any, topic: str, partition: int) -> list[tuple[str, int, int]]:
    from kafka_backup.catalog import PartitionChain

    return [(r.kind, r.start, r.end) for r in PartitionChain(store, topic, partition).walk()]


def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------ the secured listener
@dataclass(frozen=True)
class SecureKafka:
    """The local broker's SASL_SSL listener (dev/kafka.py), as written to its ``kafka-secure.json``."""

    bootstrap_servers: str
    ca_file: str
    #: A CA that did not sign the broker's certificate: trusting only it must fail.
    untrusted_ca_file: str
    scram_mechanism: str
    username: str
    password: str


@pytest.fixture(scope="session")
def secure_kafka(kafka_service: dict[str, str]) -> SecureKafka:
    """Skips when the broker is external: only the local dev broker has the secured listener."""
    path = kafka_service.get("KAFKA_SECURE_CONFIG") or os.environ.get("KAFKA_SECURE_CONFIG")
    if not path:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS points to an external broker; the SASL_SSL listener with TLS, "
                    "SCRAM and OAUTHBEARER exists only on the local one (dev/kafka.py; or set KAFKA_SECURE_CONFIG)")
    info = json.loads(Path(path).read_text())
    return SecureKafka(bootstrap_servers=info["bootstrap_servers"], ca_file=info["ca_file"],
                       untrusted_ca_file=info["untrusted_ca_file"], scram_mechanism=info["scram"]["mechanism"],
                       username=info["scram"]["username"], password=info["scram"]["password"])


def secure_kafka_settings(secure: SecureKafka, mechanism: str, *, subject: str = "kafka-backup-it",
                          **overrides: Any) -> dict[str, Any]:
    """A ``kafka`` settings section for the secured listener: SCRAM or OAUTHBEARER over verified TLS."""
    sasl: dict[str, Any]
    if mechanism == "OAUTHBEARER":
        sasl = {"mechanism": "OAUTHBEARER", "token_provider": "kafka_backup.oauth:UnsecuredJwtTokenProvider",
                "token_provider_options": {"subject": subject, "lifetime_seconds": "600"}}
    else:
        sasl = {"mechanism": secure.scram_mechanism, "username": secure.username, "password": secure.password}
    return {"bootstrap_servers": secure.bootstrap_servers, "security_protocol": "SASL_SSL",
            "tls": {"ca_file": secure.ca_file}, "sasl": sasl, **overrides}


def secure_settings(secure: SecureKafka, mechanism: str, storage_url: str, topics: list[str],
                    **backup: Any) -> Settings:
    """As :func:`settings`, but every Kafka connection goes through the secured listener."""
    return Settings.model_validate({
        "kafka": secure_kafka_settings(secure, mechanism),
        "storage": storage_from_url(storage_url).model_dump(),
        "backup": {"topics": topics, **backup},
    })
