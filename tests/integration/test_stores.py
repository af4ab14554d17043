"""Every backend through :class:`kafka_backup.storage.Store`, against the real local services.

Capabilities differ and the tests say so: local folders and WebDAV have no update-if-match, WebDAV
has no multipart upload and gets create-if-absent from ``COPY`` with ``Overwrite: F``.

GCS runs the same conformance tests against fake-gcs-server, the most faithful stand-in that can be
installed here (``docs/emulators.md`` compares the candidates).  It serves obstore's reads, listing
and deletes, but answers every XML-API write (obstore speaks no other API) with 400 "invalid
uploadType".  So on GCS each conformance test that writes is a strict xfail that must fail with a
StorageError (a fixed emulator turns it red; the backup-run test is skipped), the reads are tested on
objects seeded through the JSON API, the refusals are pinned one by one, and a recording proxy
checks the write *requests* obstore sends (the preconditions real GCS enforces).  Nothing here
claims that GCS enforces them: that needs a stand-in that executes XML writes, or real GCS.
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

BACKENDS = ["memory", "file", "s3", "azure", "webdav", "gcs"]
#: What each backend cannot do (the test for it is skipped with this reason).
UNSUPPORTED: dict[str, dict[str, str]] = {
    "file": {"update": "local folders have no update-if-match (obstore LocalStore)"},
    "webdav": {"update": "WebDAV (obstore HTTPStore) has no conditional put"},
}

_GCS_WRITES = "fake-gcs-server answers every XML-API upload, copy and multipart start with 400 invalid uploadType"
#: What a local *stand-in* cannot do although the real service can: test -> (the error the test
#: must fail with, why).  Applied as strict xfails, so the day the emulator does it the test goes red
#: and the entries must go.  ``None`` skips instead: the backup's first write fails inside the
#: test's worker threads, where no xfail can see it; the strict xfails above it already notice a
#: fixed emulator.  Details in docs/emulators.md.
EMULATOR_GAPS: dict[str, dict[str, tuple[type[BaseException] | None, str]]] = {
    "gcs": {
        "test_basic_operations": (StorageError, _GCS_WRITES),
        "test_create_if_absent_has_one_winner": (StorageError, _GCS_WRITES),
        "test_update_if_match": (StorageError, _GCS_WRITES),
        "test_large_multipart_object": (StorageError, _GCS_WRITES),
        "test_backup_protocol_on_every_backend": (None, f"every backup starts with writes: {_GCS_WRITES}"),
    },
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


@pytest.fixture(scope="session")
def gcs_bucket(gcs_service: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """(emulator URL, a fresh bucket, a credentials file that keeps obstore off the metadata server)."""
    from dev.gcs import create_bucket, emulator_credentials

    base = gcs_service.get("GCS_BASE_URL", "http://127.0.0.1:4443").rstrip("/")
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    create_bucket(bucket, base)
    return base, bucket, emulator_credentials(tmp_path_factory.mktemp("gcs") / "emulator-key.json", base)


def _gcs_url(base: str, bucket: str, key: Path, prefix: str) -> str:
    return f"gs://{bucket}/{prefix}?base_url={base}&allow_http=true&service_account_path={key}"


@pytest.fixture(scope="session")
def gcs_url(gcs_bucket: tuple[str, str, Path]) -> str:
    return _gcs_url(*gcs_bucket, "pfx")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[], Store]]:
    """(name, factory of a fresh Store under a unique prefix)."""
    name: str = request.param
    gap = EMULATOR_GAPS.get(name, {}).get(request.node.originalname)
    if gap and gap[0] is None:
        pytest.skip(gap[1])
    if gap:
        request.applymarker(pytest.mark.xfail(strict=True, raises=gap[0], reason=gap[1]))
    if name == "memory":
        base = f"memory://{uuid.uuid4().hex}"
    elif name == "file":
        base = f"file://{tmp_path / 'store'}"
    else:
        base = request.getfixturevalue(f"{name}_url")

    def factory() -> Store:
        if name in {"s3", "azure", "gcs"}:
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


def _seed(gcs_bucket: tuple[str, str, Path], objects: dict[str, bytes]) -> tuple[Store, str]:
    """A Store under a fresh prefix holding ``objects``, written through the emulator's JSON API
    (the only way to write into fake-gcs-server); also returns the prefix."""
    from dev.gcs import upload_object

    base, bucket, key = gcs_bucket
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    for name, data in objects.items():
        upload_object(bucket, f"{prefix}/{name}", data, base)
    return open_store(_gcs_url(base, bucket, key, prefix)), prefix


def test_gcs_reads_on_the_emulator(gcs_bucket: tuple[str, str, Path]) -> None:
    """Reads, listing and deletes through a gs:// URL: the part of GCS the emulator serves."""
    from dev.gcs import upload_object

    store, prefix = _seed(gcs_bucket, {"a/b/one": b"0123456789", "a/two": b"xy", "c/three": b""})
    upload_object(gcs_bucket[1], f"{prefix}-sibling/x", b"z", gcs_bucket[0])  # must not show under the prefix
    assert store.get("a/b/one") == b"0123456789"
    assert store.get_range("a/b/one", 2, 5) == b"234"
    assert store.get_range("a/b/one", 8, 100) == b"89"  # a range past the end is clipped
    assert store.get("c/three") == b""
    info = store.head("a/b/one")
    assert info.size == 10 and info.key == "a/b/one"
    assert info.version and info.version.isdigit()  # GCS reports the generation as the version
    assert sorted(i.key for i in store.list()) == ["a/b/one", "a/two", "c/three"]
    assert sorted(i.key for i in store.list("a")) == ["a/b/one", "a/two"]
    dirs, objs = store.list_dirs("a")
    assert dirs == ["b"] and [o.key for o in objs] == ["a/two"]
    # Pinned emulator gap: obstore sends start-after, fake-gcs-server ignores it and lists the start
    # key and everything before it too (the catalog filters listed keys itself, so it copes).
    assert sorted(i.key for i in store.list("a", start_after="a/b/one")) == ["a/b/one", "a/two"]
    store.delete("a/two")
    assert not store.exists("a/two")
    store.delete("a/two")  # deleting a missing key is not an error (GCS answers 404)
    with pytest.raises(ObjectNotFound, match="does-not-exist"):
        store.get("does-not-exist")
    with pytest.raises(ObjectNotFound):
        store.delete("never-there", missing_ok=False)


def test_gcs_writes_are_refused_by_the_emulator(gcs_bucket: tuple[str, str, Path]) -> None:
    """Pinned: fake-gcs-server refuses every write obstore makes, with 400, and changes nothing.

    In particular create-if-absent and update-if-match on an existing object do not silently
    overwrite it.  When this test fails the emulator has learnt XML-API writes: drop the ``gcs``
    entries of EMULATOR_GAPS and this test, and re-check docs/emulators.md.
    """
    store, _ = _seed(gcs_bucket, {"existing": b"old", "other": b"other"})
    generation = store.head("existing").version
    attempts: dict[str, Callable[[], object]] = {
        "put": lambda: store.put("new", b"data"),
        "put of an empty object": lambda: store.put("new", b""),
        "multipart put": lambda: store.put("new", (b"x" * 1024 for _ in range(3))),
        "create-if-absent of a new key": lambda: store.put_if_absent("new", b"data"),
        "create-if-absent of an existing key": lambda: store.put_if_absent("existing", b"clobbered"),
        "update-if-match at the current generation": lambda: store.put_if_match(
            "existing", b"clobbered", e_tag=None, version=generation),
        "copy to a new key": lambda: store.copy("existing", "new"),
        "copy-if-absent onto an existing key": lambda: store.copy("existing", "other", overwrite=False),
    }
    for what, attempt in attempts.items():
        with pytest.raises(StorageError, match=r"400 Bad Request.*invalid uploadType") as caught:
            attempt()
        assert type(caught.value) is StorageError, what  # not ObjectExists/PreconditionFailed: a refusal
    assert store.get("existing") == b"old" and store.head("existing").version == generation
    assert store.get("other") == b"other"
    assert sorted(i.key for i in store.list()) == ["existing", "other"]


def test_gcs_write_requests_carry_the_preconditions(gcs_bucket: tuple[str, str, Path]) -> None:
    """The GCS write path up to the wire, recorded by a transparent proxy in front of the emulator.

    Real GCS documents ``x-goog-if-generation-match: 0`` as "only if no live object exists" and
    ``x-goog-if-generation-match: <g>`` as "only if the live generation is g" (412 otherwise); the
    commit protocol's create-if-absent rests on the first.  This checks that each Store write asks
    for the right condition; it cannot check that a server enforces it (the emulator refuses them all).
    """
    from urllib.parse import unquote

    from dev.gcs_recorder import Recorded, RecordingProxy

    base, bucket, key = gcs_bucket
    _, prefix = _seed(gcs_bucket, {"existing": b"old"})
    with RecordingProxy(base) as proxy:
        store = open_store(_gcs_url(proxy.url, bucket, key, prefix))
        generation = store.head("existing").version
        assert generation
        for attempt in (lambda: store.put("plain", b"abc"),
                        lambda: store.put_if_absent("created", b"abcd"),
                        lambda: store.put_if_match("existing", b"new", e_tag=None, version=generation),
                        lambda: store.copy("existing", "copied"),
                        lambda: store.copy("existing", "copied-if-absent", overwrite=False),
                        lambda: store.put("big", (b"x" * 1024 for _ in range(3)))):
            with pytest.raises(StorageError):
                attempt()

    def sent(method: str, name: str) -> Recorded:
        [request] = proxy.matching(method, f"/{bucket}/{prefix}/{name}")
        assert request.status == 400  # what the emulator answered (see the test above)
        return request

    plain = sent("PUT", "plain").headers
    assert "x-goog-if-generation-match" not in plain and plain["content-length"] == "3"
    assert sent("PUT", "created").headers["x-goog-if-generation-match"] == "0"
    assert sent("PUT", "existing").headers["x-goog-if-generation-match"] == generation
    copied = sent("PUT", "copied").headers
    assert unquote(copied["x-goog-copy-source"]) == f"{bucket}/{prefix}/existing"
    assert "x-goog-if-generation-match" not in copied
    copied_if_absent = sent("PUT", "copied-if-absent").headers
    assert unquote(copied_if_absent["x-goog-copy-source"]) == f"{bucket}/{prefix}/existing"
    assert copied_if_absent["x-goog-if-generation-match"] == "0"
    # An iterable starts an XML multipart upload (POST ?uploads, as on S3); nothing else was sent.
    assert sent("POST", "big").query.partition("=")[0] == "uploads"
    assert len(proxy.records) == 7  # the head, then one request per write: no retries, no fallbacks
