"""The GCP function end to end: functions-framework, the real broker, a metadata-server stand-in.

Each server is ``functions-framework --target=... --source functions/gcp/main.py`` in its own
process, called over HTTP as Cloud Scheduler and Eventarc call it.  The function's identity comes
from :class:`~tests.e2e.gcp_fixtures.GoogleStandIn` (GCE metadata + Secret Manager ``:access``),
found through google-auth's own ``GCE_METADATA_HOST``/``GCE_METADATA_IP``.

What is and is not shown about GCS: no stand-in installable here executes obstore's XML-API writes
(``docs/emulators.md``, "GCS"), so the backups whose *contents* are checked here go to a local folder
(the function is storage-agnostic: the payload's ``storage.url`` picks the store).  The GCS path is
shown up to the wire: through ``dev/gcs_recorder.py`` in front of fake-gcs-server, the function's
first write carries ``Authorization: Bearer <the metadata server's token>`` and asks for
create-if-absent (``x-goog-if-generation-match: 0``); fake-gcs-server refuses the XML upload, so the
run fails and the function answers 500.  That GCS *enforces* the precondition is not verified.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka_backup.backup import shard_of
from kafka_backup.storage import open_store

from tests.e2e.gcp_fixtures import (
    ROOT,
    FunctionServer,
    GoogleStandIn,
    Reply,
    pubsub_cloudevent,
    scheduler_headers,
)
from tests.integration.conftest import SecureKafka, backed_up_rows, consume_all, secure_kafka_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GCP_SOURCE = ROOT / "functions" / "gcp"
SECRET_NAME = "projects/kb-test-project/secrets/kafka-password/versions/latest"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def google() -> Iterator[GoogleStandIn]:
    with GoogleStandIn() as standin:
        yield standin


def _function_env(google: GoogleStandIn, bootstrap: str, storage: str, **extra: str) -> dict[str, str]:
    return {**google.env(), "K_SERVICE": "kb-e2e", "KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_BACKUP_STORAGE__URL": storage, **extra}


@pytest.fixture(scope="module")
def http_fn(google: GoogleStandIn, bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[FunctionServer]:
    """backup_http at DEBUG (so the no-secret checks see everything the function can log)."""
    work = tmp_path_factory.mktemp("gcp-http")
    env = _function_env(google, bootstrap_servers, f"file://{work / 'default-backup'}",
                        KAFKA_BACKUP_TIMEOUT_SECONDS="120", KAFKA_BACKUP_LOG_LEVEL="DEBUG")
    with FunctionServer("backup_http", "http", env, work) as server:
        yield server


@pytest.fixture(scope="module")
def event_fn(google: GoogleStandIn, bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[FunctionServer]:
    work = tmp_path_factory.mktemp("gcp-event")
    env = _function_env(google, bootstrap_servers, f"file://{work / 'default-backup'}")
    with FunctionServer("backup_pubsub", "cloudevent", env, work) as server:
        yield server


def _produce(bootstrap: str, topic: str, n: int, partitions: int, value_size: int = 100) -> None:
    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5) as p:
        for i in range(n):
            p.send(topic, key=f"k{i}".encode(), value=bytes([i % 251]) * value_size, partition=i % partitions,
                   headers=[("i", str(i).encode())])


def _summary_records(server: FunctionServer) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("event") == "backup_run"]


def _assert_no_secrets(server: FunctionServer, *secrets: str) -> None:
    out = server.output()
    for secret in secrets:
        assert secret not in out, "a secret reached the function's logs"


def _rows_match(bootstrap: str, url: str, topic: str, partitions: int) -> int:
    """Every partition's backed-up records equal what Kafka returns; the total count."""
    store = open_store(url)
    total = 0
    for p in range(partitions):
        expected = consume_all(bootstrap, topic, p)
        assert backed_up_rows(store, topic, p) == expected
        total += len(expected)
    return total


def _verify(url: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "kafka_backup.cli", "verify", "--storage", url, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


# --------------------------------------------------------------------------------- scheduler (HTTP)
def test_scheduler_call_backs_up_real_records(http_fn: FunctionServer, google: GoogleStandIn,
                                              bootstrap_servers: str, make_topic: Callable[..., str],
                                              tmp_path: Path) -> None:
    topic = make_topic(3)
    _produce(bootstrap_servers, topic, 3000, 3)
    url = f"file://{tmp_path / 'bk'}"
    payload = {"job": "orders-0", "storage": {"url": url},
               "backup": {"topics": [topic], "segment_max_bytes": 16 << 10}}
    headers = scheduler_headers("orders-0")

    reply = http_fn.post(json.dumps(payload).encode(), headers)

    assert reply.status == 200, reply.body
    summary = reply.json()
    assert summary["ok"] is True and summary["exit_code"] == 0 and summary["stop_reason"] == "complete"
    assert summary["records"] == 3000 and summary["partitions_complete"] == 3 and summary["segments"] >= 3
    assert summary["job"] == "orders-0" and summary["service"] == "kb-e2e" and summary["shard"] == "0/1"
    assert _rows_match(bootstrap_servers, url, topic, 3) == 3000
    verified = _verify(url)
    assert verified["ok"] is True, verified

    # Logs: every stdout line is one JSON object Cloud Logging understands; the summary line carries
    # the figures; the engine's own lines carry run_id/topic/partition from its extra= fields.
    records = http_fn.log_records()
    assert all(isinstance(r["severity"], str) and isinstance(r["message"], str) for r in records)
    [line] = [r for r in _summary_records(http_fn) if r.get("run_id") == summary["run_id"]]
    assert line["severity"] == "INFO" and line["message"].startswith("total: 3000 records")
    assert {k: line[k] for k in summary} == summary
    engine = [r for r in records if r["logger"].startswith("kafka_backup.") and r.get("run_id") == summary["run_id"]]
    assert any(r.get("topic") == topic and "partition" in r for r in engine), engine[:5]

    # The next tick finds nothing new: nothing re-written, the backup unchanged.
    again = http_fn.post(json.dumps(payload).encode(), headers)
    assert again.status == 200 and again.json()["records"] == 0 and again.json()["ok"] is True
    assert _rows_match(bootstrap_servers, url, topic, 3) == 3000
    _assert_no_secrets(http_fn, google.access_token, headers["Authorization"].split()[1])


def test_bad_payload_fails_with_500_after_logging(http_fn: FunctionServer) -> None:
    reply = http_fn.post(json.dumps({"backup": {"shard": {"index": 3, "count": 2}}}).encode(),
                         scheduler_headers("bad-shard"))
    assert reply.status == 500
    summary = reply.json()
    assert summary["ok"] is False and summary["exit_code"] == 2 and summary["error_type"] == "ConfigError"
    assert "shard" in summary["error"]
    assert any(r["severity"] == "ERROR" and r.get("error") == summary["error"] for r in _summary_records(http_fn))

    not_json = http_fn.post(b"{not json", scheduler_headers("garbled"))
    assert not_json.status == 500
    assert not_json.json()["error_type"] == "ConfigError" and "not JSON" in not_json.json()["error"]


def test_gcs_writes_carry_the_metadata_token(http_fn: FunctionServer, google: GoogleStandIn,
                                             bootstrap_servers: str, gcs_service: dict[str, str],
                                             make_topic: Callable[..., str]) -> None:
    """The function's GCS identity on the wire (see the module docstring for what is not shown)."""
    from dev.gcs import create_bucket
    from dev.gcs_recorder import RecordingProxy

    topic = make_topic(1)
    _produce(bootstrap_servers, topic, 100, 1)
    base = gcs_service.get("GCS_BASE_URL", "http://127.0.0.1:4443").rstrip("/")
    bucket = f"kb-{uuid.uuid4().hex[:12]}"
    create_bucket(bucket, base)
    tokens_before = len(google.token_requests())
    with RecordingProxy(base) as proxy:
        payload = {"storage": {"url": f"gs://{bucket}/pfx?base_url={proxy.url}&allow_http=true"},
                   "backup": {"topics": [topic]}}
        reply = http_fn.post(json.dumps(payload).encode(), scheduler_headers("gcs"))
        requests = proxy.records

    if reply.status == 200:
        pytest.fail("fake-gcs-server now executes obstore's XML writes: read the backup back here instead")
    assert reply.status == 500
    summary = reply.json()
    assert summary["error_type"] == "StorageError" and "400" in summary["error"] and summary["run_id"]
    [token_request] = google.token_requests()[tokens_before:]
    assert token_request.headers["metadata-flavor"] == "Google"
    assert requests, "the function sent nothing to the GCS endpoint"
    assert all(r.headers.get("authorization") == f"Bearer {google.access_token}" for r in requests)
    first_write = next(r for r in requests if r.method == "PUT")
    assert first_write.path.startswith(f"/{bucket}/pfx/") and first_write.headers["x-goog-if-generation-match"] == "0"
    assert any(r["severity"] == "ERROR" and r.get("run_id") == summary["run_id"] for r in _summary_records(http_fn))
    _assert_no_secrets(http_fn, google.access_token)


def test_short_deadline_commits_partial_progress_and_the_next_call_completes(
        google: GoogleStandIn, bootstrap_servers: str, make_topic: Callable[..., str], tmp_path: Path) -> None:
    """More data than fits: a 9 s timeout (deadline 6 s after arrival, margin capped at a third) and
    the 3rd fetch of the process taking 6 s (the engine's delay point: a slow broker), which
    overruns the deadline: the margin is what keeps the answer inside the timeout."""
    timeout = 9.0
    topic = make_topic(1)
    _produce(bootstrap_servers, topic, 2000, 1, value_size=200)
    url = f"file://{tmp_path / 'bk'}"
    env = _function_env(google, bootstrap_servers, url, KAFKA_BACKUP_TIMEOUT_SECONDS=str(int(timeout)),
                        KAFKA_BACKUP_DELAYPOINT="fetch:6@3")
    small = {"segment_max_bytes": 8 << 10, "fetch_max_bytes": 8 << 10, "partition_fetch_max_bytes": 8 << 10}
    payload = json.dumps({"backup": {"topics": [topic], **small}}).encode()
    with FunctionServer("backup_http", "http", env, tmp_path / "fn") as fn:
        first = fn.post(payload, scheduler_headers("deadline"))
        second = fn.post(payload, scheduler_headers("deadline"))

    assert first.status == 200, first.body
    assert first.seconds < timeout, f"answered after {first.seconds:.1f}s, past the {timeout}s timeout"
    one = first.json()
    assert one["stop_reason"] == "deadline" and one["partitions_partial"] == 1 and one["ok"] is True
    assert 0 < one["records"] < 2000
    assert second.status == 200, second.body
    two = second.json()
    assert two["stop_reason"] == "complete" and two["partitions_complete"] == 1
    assert one["records"] + two["records"] == 2000
    assert _rows_match(bootstrap_servers, url, topic, 1) == 2000


# ------------------------------------------------------------------------------- Pub/Sub CloudEvents
def _cloudevent(fn: FunctionServer, payload: dict[str, Any]) -> Reply:
    headers, body = pubsub_cloudevent(payload)
    return fn.post(body, headers)


def test_pubsub_cloudevents_back_up_one_shard_each(event_fn: FunctionServer, bootstrap_servers: str,
                                                   make_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = make_topic(6)
    _produce(bootstrap_servers, topic, 2000, 6)
    url = f"file://{tmp_path / 'bk'}"
    run_ids = []
    for index in range(2):
        payload = {"job": f"shard-{index}", "storage": {"url": url},
                   "backup": {"topics": [topic], "shard": {"index": index, "count": 2}}}
        reply = _cloudevent(event_fn, payload)
        assert reply.status == 200, reply.body
        [line] = [r for r in _summary_records(event_fn) if r.get("job") == f"shard-{index}"]
        mine = [p for p in range(6) if shard_of(topic, p, 2) == index]
        assert line["ok"] is True and line["shard"] == f"{index}/2" and line["partitions"] == len(mine)
        run_ids.append(line["run_id"])
    lines = [r for r in _summary_records(event_fn) if r.get("run_id") in run_ids]
    assert sum(r["records"] for r in lines) == 2000
    assert _rows_match(bootstrap_servers, url, topic, 6) == 2000


def test_pubsub_failed_run_raises_so_pubsub_redelivers(event_fn: FunctionServer, tmp_path: Path) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    reply = _cloudevent(event_fn, {"job": "missing", "storage": {"url": f"file://{tmp_path / 'bk'}"},
                                   "backup": {"topics": [missing]}})
    assert reply.status == 500
    [line] = [r for r in _summary_records(event_fn) if r.get("job") == "missing"]
    assert line["severity"] == "ERROR" and line["ok"] is False and line["run_id"]


# ------------------------------------------------------------------- Google identity for Kafka
def _in_function_process(google: GoogleStandIn, code: str) -> Any:
    """Run ``code`` as the function's process would (its folder on sys.path, the stand-in's env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_", "GOOGLE_", "CLOUDSDK_"))}
    env.update(google.env(), PYTHONPATH=str(GCP_SOURCE), HOME=str(ROOT / ".cache" / "no-home"))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_managed_kafka_token_is_the_metadata_token_in_googles_format(google: GoogleStandIn) -> None:
    before = len(google.token_requests())
    out = _in_function_process(google, """
import json, time
from gcp_identity import ManagedKafkaTokenProvider
p = ManagedKafkaTokenProvider()
first = p.token()
print(json.dumps({"token": first, "again": p.token(), "expires_at": p.expires_at, "now": time.time(),
                  "other": ManagedKafkaTokenProvider(principal="other@p.iam.gserviceaccount.com").token()}))
""")
    header, claims, signature = out["token"].split(".")
    assert _b64json(header) == {"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}
    body = _b64json(claims)
    assert body["sub"] == google.email and body["scope"] == "kafka"
    assert abs(body["iat"] - out["now"]) < 30 and abs(body["exp"] - (out["now"] + 3599)) < 30
    assert body["exp"] == int(out["expires_at"])
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)).decode() == google.access_token
    assert out["again"] == out["token"]  # cached, not re-fetched per connection
    assert _b64json(out["other"].split(".")[1])["sub"] == "other@p.iam.gserviceaccount.com"
    fetched = google.token_requests()[before:]
    assert len(fetched) == 1 and fetched[0].query["scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]


def test_secret_manager_reference_is_read_with_the_function_identity(google: GoogleStandIn) -> None:
    google.secrets[SECRET_NAME] = "s3cr3t-value-for-the-test"
    out = _in_function_process(google, f"""
import json
from kafka_backup import ConfigError
from gcp_identity import SecretManagerResolver
r = SecretManagerResolver()
errors = []
for ref in ("projects/kb-test-project/secrets/nope/versions/1", "not-a-secret-name"):
    try:
        r(ref)
    except ConfigError as exc:
        errors.append(str(exc))
print(json.dumps({{"value": r({SECRET_NAME!r}), "errors": errors}}))
""")
    assert out["value"] == "s3cr3t-value-for-the-test"
    assert "HTTP 404 NOT_FOUND" in out["errors"][0] and "projects/PROJECT/secrets" in out["errors"][1]
    reads = [s for s in google.seen if s.path == f"/v1/{SECRET_NAME}:access"]
    assert reads and reads[-1].headers["authorization"] == f"Bearer {google.access_token}"


# ------------------------------------------------------------- the secured listener (SASL_SSL)
@pytest.fixture(scope="module")
def secure_fn(google: GoogleStandIn, secure_kafka: SecureKafka, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[FunctionServer]:
    """backup_http against the SASL_SSL listener: SCRAM, the password a Secret Manager reference."""
    google.secrets[SECRET_NAME] = secure_kafka.password
    work = tmp_path_factory.mktemp("gcp-secure")
    kafka = secure_kafka_settings(secure_kafka, secure_kafka.scram_mechanism)
    env = _function_env(google, secure_kafka.bootstrap_servers, f"file://{work / 'default-backup'}",
                        KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
                        KAFKA_BACKUP_KAFKA__TLS__CA_FILE=kafka["tls"]["ca_file"],
                        KAFKA_BACKUP_KAFKA__SASL__MECHANISM=secure_kafka.scram_mechanism,
                        KAFKA_BACKUP_KAFKA__SASL__USERNAME=secure_kafka.username,
                        KAFKA_BACKUP_KAFKA__SASL__PASSWORD=f"secretref:gcp-secretmanager:{SECRET_NAME}",
                        KAFKA_BACKUP_LOG_LEVEL="DEBUG")
    with FunctionServer("backup_http", "http", env, work) as server:
        yield server


def test_scram_password_from_secret_manager(secure_fn: FunctionServer, secure_kafka: SecureKafka,
                                            google: GoogleStandIn, bootstrap_servers: str,
                                            make_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = make_topic(2)
    _produce(bootstrap_servers, topic, 500, 2)
    url = f"file://{tmp_path / 'bk'}"
    reads_before = len([s for s in google.seen if s.path.endswith(":access")])
    reply = secure_fn.post(json.dumps({"storage": {"url": url}, "backup": {"topics": [topic]}}).encode(),
                           scheduler_headers("scram"))
    assert reply.status == 200, reply.body
    assert reply.json()["records"] == 500
    assert _rows_match(bootstrap_servers, url, topic, 2) == 500
    assert len([s for s in google.seen if s.path.endswith(":access")]) > reads_before
    _assert_no_secrets(secure_fn, secure_kafka.password, google.access_token)


def test_managed_kafka_token_reaches_the_broker(secure_fn: FunctionServer, google: GoogleStandIn,
                                                make_topic: Callable[..., str], tmp_path: Path) -> None:
    """OAUTHBEARER with the Google provider, loaded by name in the function's process.

    What this shows: the engine imports ``gcp_identity:ManagedKafkaTokenProvider`` from the
    settings, the provider takes its token from the metadata server, and kafka-python presents it
    over TLS.  What it cannot show: the local broker validates unsigned JWTs only (``alg: none``,
    empty signature), so it refuses Google's format, whose last segment carries the access token;
    only Managed Service for Apache Kafka accepts it.  So the expected outcome is the broker's
    ``invalid_token`` in its log, a failed run (HTTP 500) and no token in the function's logs.
    """
    from dev import services

    broker_log = services.get("kafka").logfile
    refusals_before = _invalid_token_lines(broker_log)
    topic = make_topic(1)
    fetched_before = len(_kafka_token_fetches(secure_fn))
    sasl = {"mechanism": "OAUTHBEARER", "token_provider": "gcp_identity:ManagedKafkaTokenProvider"}
    payload = {"storage": {"url": f"file://{tmp_path / 'bk'}"}, "backup": {"topics": [topic]},
               "kafka": {"connect_timeout_seconds": 4, "sasl": sasl}}
    reply = secure_fn.post(json.dumps(payload).encode(), scheduler_headers("managed-kafka"))
    assert reply.status == 500, reply.body
    summary = reply.json()
    # kafka-python reports the broker's refusal as a dropped connection and retries until the
    # connect timeout, so the engine classifies the run as "unreachable" (4), not "credentials" (2).
    assert summary["ok"] is False and summary["exit_code"] in (2, 4), summary
    # The provider fetched a token (its google-auth credentials are shared with the Secret Manager
    # look-up in this process, so the metadata request may have been made for that one already).
    assert len(_kafka_token_fetches(secure_fn)) > fetched_before and google.token_requests()
    assert _invalid_token_lines(broker_log) > refusals_before, "the broker never saw (and refused) the token"
    _assert_no_secrets(secure_fn, google.access_token)


def _kafka_token_fetches(server: FunctionServer) -> list[dict[str, Any]]:
    return [r for r in server.log_records()
            if r["logger"] == "kafka_backup.oauth" and r["message"].startswith("Google Managed Kafka token provider")]


def _invalid_token_lines(broker_log: Path) -> int:
    text = broker_log.read_text(errors="replace") if broker_log.exists() else ""
    return sum(1 for line in text.splitlines() if "Failed authentication" in line and "invalid_token" in line)


# ----------------------------------------------------------------------------------- packaging
def test_deployed_requirements_pin_what_the_tests_ran() -> None:
    """Cloud Build installs functions/gcp/requirements.txt without constraints.txt: same versions."""
    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                out[name.split("[")[0].lower().replace("_", "-")] = version
        return out

    deployed, tested = pins(GCP_SOURCE / "requirements.txt"), pins(ROOT / "constraints.txt")
    assert {"obstore", "kafka-python", "functions-framework", "google-auth"} <= deployed.keys()
    assert {name: deployed[name] for name in deployed} == {name: tested.get(name) for name in deployed}
