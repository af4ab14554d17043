"""Every backend through :class:`kafka_backup.storage.Store`, against the real local services.

Capabilities differ and the tests say so: local folders and WebDAV have no update-if-match, WebDAV
has no multipart upload and gets create-if-absent from ``COPY`` with ``Overwrite: F``.

GCS: fake-gcs-server serves none of obstore's writes (obstore speaks only Google's XML API and the
emulator answers every XML upload with 400 "invalid uploadType"; see ``docs/emulators.md``), so on
GCS only the reads are tested here, on objects seeded through the emulator's JSON API.  Everything
the commit protocol needs from a store (create-if-absent races, update-if-match, multipart, the
backup itself) is tested on S3 (LocalStack), Azure (Azurite), local folders, memory and WebDAV.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_backup.errors import ObjectExists, ObjectNotFound, PreconditionFailed, StorageError, StorageUnsupported
from kafka_backup.storage import Store, open_store

pytestmark = pytest.mark.integration

BACKENDS = ["memory", "file", "s3", "azure", "webdav"]
#: What each backend cannot do (the test for it is skipped with this reason).
UNSUPPORTED: dict[str, dict[str, str]] = {
    "file": {"update": "local folders have no update-if-match (obstore LocalStore)"},
    "webdav": {"update": "WebDAV (obstore HTTPStore) has no conditional put"},
}


@pytest.fixture(scope="session")
def s3_url(localstack_service: dict[str, str]) -> str:
    import boto3

    endpoint = localstack_service.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return (f"s3://{bucket}/pfx?endpoint={endpoint}&region=us-east-1&path_style=true&allow_http=true"
            "&access_key=test&secret_key=test")


@pytest.fixture(scope="session")
def azure_url(azurite_service: dict[str, str]) -> str:
    from dev.azurite import create_container

    container = f"kb-{uuid.uuid4().hex[:12]}"
    create_container(container)
    return f"az://{container}/pfx?use_emulator=true&allow_http=true"


@pytest.fixture(scope="session")
def webdav_url(webdav_service: dict[str, str]) -> str:
    return webdav_service.get("WEBDAV_URL", "http://127.0.0.1:8765/").rstrip("/") + f"/kb-{uuid.uuid4().hex[:8]}/"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[], Store]]:
    """(name, factory of a fresh Store under a unique prefix)."""
    name: str = request.param
    if name == "memory":
        base = f"memory://{uuid.uuid4().hex}"
    elif name == "file":
        base = f"file://{tmp_path / 'store'}"
    else:
        base = request.getfixturevalue(f"{name}_url")

    def factory() -> Store:
        if name in {"s3", "azure"}:
            head, _, query = base.partition("?")
            return open_store(f"{head}/{uuid.uuid4().hex[:8]}?{query}")
        if name == "webdav":
            return open_store(f"{base}{uuid.uuid4().hex[:8]}/")
        return open_store(base)

    return name, factory


def _unsupported(name: str, feature: str) -> str | None:
    return UNSUPPORTED.get(name, {}).get(feature)


def test_basic_operations(backend: tuple[str, Callable[[], Store]]) -> None:
    _name, factory = backend
    store = factory()
    store.put("a/b/one", b"0123456789")
    store.put("a/two", b"xy")
    store.put("c/three", b"")
    assert store.get("a/b/one") == b"0123456789"
    assert store.get_range("a/b/one", 2, 5) == b"234"
    assert store.get("c/three") == b""
    info = store.head("a/b/one")
    assert info.size == 10 and info.key == "a/b/one"
    assert sorted(i.key for i in store.list("a")) == ["a/b/one", "a/two"]
    dirs, objs = store.list_dirs("a")
    assert dirs == ["b"] and [o.key for o in objs] == ["a/two"]
    store.delete("a/two")
    assert not store.exists("a/two")
    store.delete("a/two")  # deleting a missing key is not an error
    with pytest.raises(ObjectNotFound, match="does-not-exist"):
        store.get("does-not-exist")
    with pytest.raises(ObjectNotFound):
        store.delete("never-there", missing_ok=False)


def test_create_if_absent_has_one_winner(backend: tuple[str, Callable[[], Store]]) -> None:
    name, factory = backend
    if reason := _unsupported(name, "create"):
        pytest.skip(reason)
    store = factory()
    store.put_if_absent("commit/0", b"first")
    with pytest.raises(ObjectExists):
        store.put_if_absent("commit/0", b"second")
    assert store.get("commit/0") == b"first"
    if name == "webdav":
        return  # wsgidav checks then copies: concurrent creates are not atomic (docs/emulators.md)
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        try:
            store.put_if_absent("commit/race", str(i).encode())
            winners.append(i)
        except ObjectExists:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get("commit/race") == str(winners[0]).encode()


def test_update_if_match(backend: tuple[str, Callable[[], Store]]) -> None:
    name, factory = backend
    store = factory()
    first = store.put("hint", b"v1")
    if reason := _unsupported(name, "update"):
        with pytest.raises(StorageUnsupported):
            store.put_if_match("hint", b"v2", e_tag=first.e_tag or "x", version=first.version)
        pytest.skip(reason)
    second = store.put_if_match("hint", b"v2", e_tag=first.e_tag, version=first.version)
    assert store.get("hint") == b"v2"
    with pytest.raises(PreconditionFailed):
        store.put_if_match("hint", b"v3", e_tag=first.e_tag, version=first.version)
    assert store.get("hint") == b"v2" and second is not None


def test_large_multipart_object(backend: tuple[str, Callable[[], Store]]) -> None:
    name, factory = backend
    if reason := _unsupported(name, "multipart"):
        pytest.skip(reason)
    store = factory()
    chunk = os.urandom(1 << 20)
    payload_hash = hashlib.sha256(chunk * 64).hexdigest()
    store.put("big", (chunk for _ in range(64)))  # multipart, except on WebDAV (one streamed PUT)
    assert store.head("big").size == 64 << 20
    assert hashlib.sha256(store.get("big")).hexdigest() == payload_hash
    assert store.get_range("big", (32 << 20) + 5, (32 << 20) + 9) == chunk[5:9]


def test_backup_protocol_on_every_backend(backend: tuple[str, Callable[[], Store]], bootstrap_servers: str,
                                          make_topic: Any) -> None:
    """Backup, a racing second run, verify and read back, on each backend."""
    from kafka import KafkaProducer
    from kafka_backup.backup import BackupRun

    from tests.integration.conftest import backed_up_rows, consume_all, settings

    name, factory = backend
    store = factory()
    topic = make_topic(2)
    with KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=2, batch_size=4096) as p:
        for i in range(2000):
            p.send(topic, key=str(i).encode(), value=b"v" * 100, partition=i % 2, headers=[("h", b"\x00")])
    s = settings(bootstrap_servers, "memory://unused", [topic], segment_max_bytes=32 << 10)
    runs = [BackupRun(s, store=store) for _ in range(2 if name != "webdav" else 1)]
    results: list[Any] = []
    threads = [threading.Thread(target=lambda r=r: results.append(r.run())) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results), [r.errors for r in results]
    assert sum(r.records for r in results) == 2000
    from kafka_backup.report import verify

    rep = verify(store)
    assert rep.ok, rep.problems
    for part in range(2):
        assert backed_up_rows(store, topic, part) == consume_all(bootstrap_servers, topic, part)


def test_gcs_reads_on_the_emulator(gcs_service: dict[str, str]) -> None:
    """Reads, listing and deletes through gs:// URLs (writes: see the module docstring)."""
    from dev.gcs import create_bucket, upload_object

    base = gcs_service.get("GCS_BASE_URL", "http://127.0.0.1:4443")
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    create_bucket(bucket, base)
    for key, data in [("pfx/a/b/one", b"0123456789"), ("pfx/a/two", b"xy"), ("other/x", b"z")]:
        upload_object(bucket, key, data, base)
    store = open_store(f"gs://{bucket}/pfx?base_url={base}&skip_signature=true&allow_http=true")
    assert store.get("a/b/one") == b"0123456789"
    assert store.get_range("a/b/one", 2, 5) == b"234"
    info = store.head("a/b/one")
    assert info.size == 10 and info.version  # GCS reports the generation as the version
    assert sorted(i.key for i in store.list("a")) == ["a/b/one", "a/two"]
    dirs, objs = store.list_dirs("a")
    assert dirs == ["b"] and [o.key for o in objs] == ["a/two"]
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    with pytest.raises(StorageError):  # the emulator's gap, pinned so a fixed emulator is noticed
        store.put_if_absent("new", b"x")
