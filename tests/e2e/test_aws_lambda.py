"""The AWS function end to end: its deployment zip under Lambda's real runtime client and the emulator.

Each test starts the function as Lambda would (see ``aws_fixtures``): the unpacked zip as a
read-only task root, awslambdaric in a separate runtime directory, Lambda's environment with an
IAM role's STS credentials, LocalStack for S3 and Secrets Manager, and the real broker.  Events are
what EventBridge delivers: a Scheduler schedule's ``Input`` or a classic scheduled rule's envelope.
"""

# ruff: noqa: F811  (the fixtures imported from aws_fixtures are, by pytest's design, redefined as parameters)
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka_backup.storage import open_store

from tests.e2e.aws_fixtures import (  # noqa: F401  (fixtures)
    AwsAccount,
    Invocation,
    LambdaFunction,
    aws_account,
    emf_lines,
    lambda_build,
    lambda_package,
    lambda_runtime_dir,
    lambda_task_root,
    metric_dimensions,
    metric_units,
    read_only,
    rie_binary,
    start_lambda,
)
from tests.integration.conftest import SecureKafka, backed_up_rows, consume_all, secure_kafka  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

#: The function contract's figures; the engine may add more (each is checked against the summary).
CONTRACT_UNITS = {
    "Records": "Count", "BatchBytesRead": "Bytes", "BytesStored": "Bytes", "Segments": "Count",
    "PartitionsComplete": "Count", "PartitionsPartial": "Count", "PartitionsError": "Count",
    "LagRecords": "Count", "GapOffsets": "Count", "RunSeconds": "Seconds", "TimeLeftSeconds": "Seconds",
    "RunFailed": "Count",
}


def snake(metric: str) -> str:
    """A metric's name as a summary field: ``BatchBytesRead`` -> ``batch_bytes_read``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", metric).lower()


def scheduler_input(job: str, index: int, count: int, **more: Any) -> dict[str, Any]:
    """What the Terraform module's schedule i of N sends (its ``target.input``)."""
    return {"job": job, "backup": {"shard": {"index": index, "count": count}, **more}}


def scheduled_rule_event(rule: str = "kafka-backup-hourly") -> dict[str, Any]:
    """A classic EventBridge scheduled rule's event, as delivered to a Lambda target."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-12-03T06:00:00Z", "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"], "detail": {}}


def function_env(bootstrap: str, url: str, topics: str, **more: str) -> dict[str, str]:
    return {"KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KAFKA_BACKUP_STORAGE__URL": url,
            "KAFKA_BACKUP_BACKUP__TOPICS": topics, **more}


def reader_url(account: AwsAccount, prefix: str) -> str:
    """The same location for this process (and the CLI), with the endpoint spelled out."""
    return f"{account.storage_url(prefix)}&endpoint={account.endpoint}&region=us-east-1"


def produce(bootstrap: str, topic: str, n: int, partitions: int, *, value_size: int = 64,
            batch_size: int = 16384, start: int = 0) -> None:
    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=batch_size) as p:
        for i in range(start, start + n):
            p.send(topic, key=str(i).encode(), value=(b"v%06d" % i).ljust(value_size, b"."), partition=i % partitions,
                   headers=[("i", str(i).encode())])


def ok_summary(inv: Invocation) -> dict[str, Any]:
    assert inv.status == 200, inv
    assert isinstance(inv.body, dict) and inv.body.get("event") == "backup_run", inv.body
    return inv.body


def run_emf(fn: LambdaFunction, inv: Invocation) -> dict[str, Any]:
    """The invocation's run metrics (not the cold-start metric)."""
    docs = [d for d in emf_lines(fn.records(inv)) if "RunFailed" in d]
    assert len(docs) == 1, f"expected one run EMF document, got {docs}"
    return docs[0]


def report_ms(fn: LambdaFunction, inv: Invocation) -> float:
    """The emulator's ``REPORT ... Duration: N ms`` for the invocation (Lambda's own timer)."""
    match = re.search(r"REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: ([\d.]+) ms",
                      fn.text(inv))
    assert match, fn.text(inv)
    return float(match.group(1))


def assert_no_secrets(text: str, **secrets: str) -> None:
    for what, value in secrets.items():
        assert value, f"no {what} to look for"
        if value in text:  # not an assert: its report would print the whole output
            line = next(line for line in text.splitlines() if value in line)
            pytest.fail(f"the {what} appears in the function's output: {line.replace(value, '<' + what + '>')[:300]}")


# ------------------------------------------------------------------------------------------ the package
def test_package_is_self_contained_reproducible_and_checked_against_the_size_limit(
        lambda_build: Any, lambda_package: Any, lambda_task_root: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(lambda_package.path).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert "handler.py" in names, "the handler sits at the zip root (handler = handler.handler)"
    assert {"kafka_backup", "aws_lambda_powertools", "aws_xray_sdk", "boto3", "botocore", "obstore", "kafka"} <= top
    assert not top & {"pytest", "_pytest", "ruff", "mypy", "awslambdaric", "bin", "tests", "dev"}, top
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "direct_url.json"))]
    assert lambda_package.unzipped_bytes < lambda_build.LAMBDA_UNZIPPED_LIMIT
    assert all(i.date_time == lambda_build.packaging.ZIP_TIME for i in zipfile.ZipFile(lambda_package.path).infolist())
    assert read_only(lambda_task_root)

    # Same tree, same bytes: the zip writer is deterministic (sorted entries, fixed times and modes).
    again = lambda_build.zip_tree(lambda_task_root, tmp_path / "again.zip")
    assert again.sha256 == lambda_package.sha256

    # The size check runs before anything is written, and says why.
    with pytest.raises(lambda_build.PackageTooLarge, match=r"over the limit of 1\.0 MiB \(1048576 bytes"):
        lambda_build.zip_tree(lambda_task_root, tmp_path / "small.zip", max_unzipped=1 << 20)
    assert not (tmp_path / "small.zip").exists() and not (tmp_path / "small.zip.partial").exists()

    # AWS_MSK_IAM signs with the role's environment credentials using only what is in the zip.
    probe = ("from kafka.net.sasl.msk import SaslMechanismAwsMskIam as M; "
             "m = M(security_protocol='SASL_SSL', host='b-1.demo.kafka.us-east-1.amazonaws.com'); "
             "print(m.auth_bytes().decode())")
    env = {"PYTHONPATH": str(lambda_task_root), "PYTHONDONTWRITEBYTECODE": "1",
           "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
           "AWS_SESSION_TOKEN": "tok3n", "AWS_DEFAULT_REGION": "eu-west-1", "PATH": os.environ["PATH"]}
    python = getattr(sys, "_base_executable", sys.executable)
    out = subprocess.run([python, "-S", "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    signed = json.loads(out.stdout)
    assert signed["action"] == "kafka-cluster:Connect"
    assert re.fullmatch(r"ASIAEXAMPLE/\d{8}/eu-west-1/kafka-cluster/aws4_request", signed["x-amz-credential"])
    assert signed["x-amz-security-token"] == "tok3n" and len(signed["x-amz-signature"]) == 64


# --------------------------------------------------------------- (a) + (d) scheduled runs, logs, metrics
def test_scheduled_runs_back_up_to_s3_with_json_logs_and_emf_metrics(
        start_lambda: Any, aws_account: AwsAccount, bootstrap_servers: str, make_topic: Any,
        lambda_task_root: Path) -> None:
    topic = make_topic(3)
    produce(bootstrap_servers, topic, 3000, 3)
    prefix = f"a-{uuid.uuid4().hex[:8]}"
    # DEBUG as the Terraform module's log_level = "DEBUG" sets it: ours and Lambda's application log
    # level (which Powertools obeys first), so the engine's per-segment lines are there to check.
    fn = start_lambda(function_env(bootstrap_servers, aws_account.storage_url(prefix), topic,
                                   KAFKA_BACKUP_LOG_LEVEL="DEBUG", AWS_LAMBDA_LOG_LEVEL="DEBUG"),
                      name="kafka-backup-orders")

    # Two schedules, one per shard, as the Terraform module creates them for shards = 2.
    shard_runs = [fn.invoke(scheduler_input(f"orders-shard-{i}", i, 2)) for i in range(2)]
    summaries = [ok_summary(inv) for inv in shard_runs]
    assert [s["shard"] for s in summaries] == ["0/2", "1/2"]
    assert [s["job"] for s in summaries] == ["orders-shard-0", "orders-shard-1"]
    assert all(s["ok"] and s["stop_reason"] == "complete" and s["lag_records"] == 0 for s in summaries)
    assert sum(s["partitions"] for s in summaries) == 3, "each partition belongs to exactly one shard"
    assert sum(s["records"] for s in summaries) == 3000

    store = open_store(reader_url(aws_account, prefix))
    for p in range(3):
        assert backed_up_rows(store, topic, p) == consume_all(bootstrap_servers, topic, p)

    # A classic scheduled rule: its envelope carries no payload (detail is empty), so one run does all.
    produce(bootstrap_servers, topic, 90, 3, start=3000)
    rule_run = fn.invoke(scheduled_rule_event())
    rule = ok_summary(rule_run)
    assert (rule["shard"], rule["records"], rule["partitions"], rule["stop_reason"]) == ("0/1", 90, 3, "complete")
    for p in range(3):
        assert backed_up_rows(store, topic, p) == consume_all(bootstrap_servers, topic, p)

    verified = subprocess.run([sys.executable, "-m", "kafka_backup.cli", "verify", "--storage",
                               reader_url(aws_account, prefix), "--json"],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    # (d) EMF: every figure with its unit, dimensions service (function name) and shard, per run.
    for inv, summary in [*zip(shard_runs, summaries, strict=True), (rule_run, rule)]:
        emf = run_emf(fn, inv)
        assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KafkaBackup"
        units = metric_units(emf)
        assert CONTRACT_UNITS.items() <= units.items(), units
        assert {name: emf[name] for name in units} == {name: [summary[snake(name)]] for name in units}
        assert metric_dimensions(emf) == [["service", "shard"]]
        assert (emf["service"], emf["shard"]) == ("kafka-backup-orders", summary["shard"])
        assert emf["Records"] == [summary["records"]] and emf["RunFailed"] == [0.0]
        assert emf["PartitionsComplete"] == [summary["partitions"]] and emf["TimeLeftSeconds"][0] > 0
    cold = [d for d in emf_lines(fn.records()) if "ColdStart" in d]
    assert len(cold) == 1, "one cold start for three invocations of one instance"

    # (d) JSON logs: one backup_run line per run with the Lambda context, engine lines with their fields.
    logs = fn.records()
    runs = [r for r in logs if r.get("event") == "backup_run"]
    assert [r["run_id"] for r in runs] == [s["run_id"] for s in [*summaries, rule]]
    assert [r["cold_start"] for r in runs] == [True, False, False]
    assert all(r["level"] == "INFO" and r["function_name"] == "kafka-backup-orders" and r["function_request_id"]
               and r["ok"] is True for r in runs)
    committed = [r for r in logs if r.get("name") == "kafka_backup.backup" and "committed [" in r.get("message", "")]
    assert committed and {r["topic"] for r in committed} == {topic}
    assert {r["partition"] for r in committed} == {0, 1, 2}
    assert {r["run_id"] for r in committed} <= {r["run_id"] for r in runs}
    assert all(r["function_request_id"] for r in committed), "the engine's lines carry the Lambda context"
    assert_no_secrets(fn.output(), secret_access_key=aws_account.credentials["AWS_SECRET_ACCESS_KEY"],
                      session_token=aws_account.credentials["AWS_SESSION_TOKEN"])
    assert not list(lambda_task_root.rglob("__pycache__")), "nothing was written into the task root"


# ------------------------------------------------------------------------------ (b) a short timeout
def test_short_timeout_returns_in_time_with_progress_committed_and_the_next_run_finishes(
        start_lambda: Any, aws_account: AwsAccount, bootstrap_servers: str, make_topic: Any) -> None:
    topic = make_topic(2)
    # One ~1 KiB record per batch and one batch per segment: 2000 uploads and commits, several times
    # more than fit in the time (about 50 a second here, through LocalStack).
    produce(bootstrap_servers, topic, 2000, 2, value_size=1024, batch_size=1100)
    prefix = f"b-{uuid.uuid4().hex[:8]}"
    timeout = 10
    fn = start_lambda(function_env(bootstrap_servers, aws_account.storage_url(prefix), topic,
                                   KAFKA_BACKUP_BACKUP__SEGMENT_MAX_BYTES="1024",
                                   KAFKA_BACKUP_BACKUP__PARTITION_FETCH_MAX_BYTES="1024"), timeout=timeout)

    first = fn.invoke(scheduler_input("orders-shard-0", 0, 1))
    summary = ok_summary(first)  # not "Task timed out after 10.00 seconds"
    assert summary["ok"] and summary["stop_reason"] == "deadline", summary
    assert summary["partitions_partial"] >= 1 and 0 < summary["records"] < 2000 and summary["lag_records"] > 0
    # The margin (default 30 s) is capped at a third of the remaining time: the run worked until only
    # about its commit reserve (10 % of its budget) was left, and Lambda's clock still had time to spare.
    budget = summary["run_seconds"] + summary["time_left_seconds"]
    assert summary["time_left_seconds"] <= 0.2 * budget, summary
    assert timeout * 1000 - report_ms(fn, first) > 500
    store = open_store(reader_url(aws_account, prefix))
    committed = 0
    for p in range(2):
        rows = backed_up_rows(store, topic, p)
        assert rows == consume_all(bootstrap_servers, topic, p)[: len(rows)], "what is committed is a prefix"
        committed += len(rows)
    assert committed == summary["records"]

    # The next scheduled run resumes (its schedule Input asks for full-size segments).
    second = fn.invoke(scheduler_input("orders-shard-0", 0, 1, segment_max_bytes=64 << 20,
                                       partition_fetch_max_bytes=4 << 20))
    rest = ok_summary(second)
    assert report_ms(fn, second) < timeout * 1000
    assert (rest["stop_reason"], rest["lag_records"], rest["partitions_complete"]) == ("complete", 0, 2), rest
    assert rest["records"] == 2000 - summary["records"]
    for p in range(2):
        assert backed_up_rows(store, topic, p) == consume_all(bootstrap_servers, topic, p)
    assert "Task timed out" not in fn.output()


# ---------------------------------------------------- (c) SCRAM password from Secrets Manager, tracing on
def test_scram_password_from_secrets_manager_over_tls_and_never_logged(
        start_lambda: Any, aws_account: AwsAccount, bootstrap_servers: str, secure_kafka: SecureKafka,
        make_topic: Any) -> None:
    topic = make_topic(2)
    produce(bootstrap_servers, topic, 500, 2)
    secrets = aws_account.client("secretsmanager")
    arn = secrets.create_secret(Name=f"kafka-backup/scram-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(
        {"username": secure_kafka.username, "password": secure_kafka.password}))["ARN"]
    wrong_value = "not-the-password-" + uuid.uuid4().hex
    wrong = secrets.create_secret(Name=f"kafka-backup/wrong-{uuid.uuid4().hex[:8]}", SecretString=wrong_value)["Name"]
    prefix = f"c-{uuid.uuid4().hex[:8]}"
    fn = start_lambda({
        **function_env(secure_kafka.bootstrap_servers, aws_account.storage_url(prefix), topic,
                       KAFKA_BACKUP_LOG_LEVEL="DEBUG", AWS_LAMBDA_LOG_LEVEL="DEBUG"),
        "KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_BACKUP_KAFKA__TLS__CA_FILE": secure_kafka.ca_file,
        "KAFKA_BACKUP_KAFKA__SASL__MECHANISM": secure_kafka.scram_mechanism,
        "KAFKA_BACKUP_KAFKA__SASL__USERNAME": secure_kafka.username,
        "KAFKA_BACKUP_KAFKA__SASL__PASSWORD": f"secretref:aws-secretsmanager:{arn}#password",
        # The module's enable_tracing = true: the tracer (aws_xray_sdk, from the zip) wraps the handler.
        "POWERTOOLS_TRACE_DISABLED": "false", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    })
    summary = ok_summary(fn.invoke(scheduler_input("secure", 0, 1)))
    assert summary["records"] == 500 and summary["stop_reason"] == "complete"
    store = open_store(reader_url(aws_account, prefix))
    for p in range(2):
        assert backed_up_rows(store, topic, p) == consume_all(bootstrap_servers, topic, p)
    # The emulator never hands the runtime a trace id (its tracer is a no-op), so X-Ray drops the
    # handler's subsegment, and says so: proof that the tracer wrapped the handler and patched botocore.
    assert "successfully patched module botocore" in fn.output()
    assert "Subsegment ## handler discarded" in fn.output()

    # A key the secret does not have, and a password Kafka refuses: errors name the secret, not values.
    missing = fn.invoke(scheduler_input("secure", 0, 1) | {"kafka": {"sasl": {
        "password": f"secretref:aws-secretsmanager:{arn}#nope"}}})
    assert missing.status == 200 and missing.body["errorType"] == "RunFailedError", missing.body
    assert "'nope'" in missing.body["errorMessage"] and arn in missing.body["errorMessage"]
    # (kafka-python retries a refused login until the connect timeout, 30 s by default: shortened here.)
    refused = fn.invoke(scheduler_input("secure", 0, 1) | {"kafka": {"connect_timeout_seconds": 3, "sasl": {
        "password": f"secretref:aws-secretsmanager:{wrong}"}}})
    assert refused.status == 200 and refused.body["errorType"] == "RunFailedError", refused.body
    failed = [r for r in fn.records(refused) if r.get("event") == "backup_run"]
    assert failed and failed[0]["error_type"] == "KafkaAuthError" and failed[0]["exit_code"] == 2, failed

    assert_no_secrets(fn.output(), scram_password=secure_kafka.password, wrong_password=wrong_value,
                      secret_access_key=aws_account.credentials["AWS_SECRET_ACCESS_KEY"],
                      session_token=aws_account.credentials["AWS_SESSION_TOKEN"])


# --------------------------------------------------------------------------------------- (e) failures
def test_failed_runs_return_lambdas_error_shape_after_flushing_metrics(
        start_lambda: Any, aws_account: AwsAccount, bootstrap_servers: str, make_topic: Any) -> None:
    topic = make_topic(1)
    fn = start_lambda(function_env(bootstrap_servers, aws_account.storage_url(f"e-{uuid.uuid4().hex[:8]}"), topic),
                      name="kafka-backup-failing")
    missing_topic = f"no-such-topic-{uuid.uuid4().hex[:8]}"

    failed = fn.invoke(scheduler_input("orders-shard-0", 0, 1, topics=[missing_topic]))
    # Read at once: the runtime wrote its lines before it posted the error, so they are already there.
    lines = fn.records(failed)
    assert failed.status == 200 and set(failed.body) >= {"errorType", "errorMessage"}, failed.body
    assert failed.body["errorType"] == "RunFailedError" and missing_topic in failed.body["errorMessage"]
    emf = run_emf(fn, failed)
    assert emf["RunFailed"] == [1.0] and emf["Records"] == [0.0] and emf["shard"] == "0/1"
    assert emf["service"] == "kafka-backup-failing"
    summary = next(r for r in lines if r.get("event") == "backup_run")
    assert summary["level"] == "ERROR" and summary["ok"] is False and summary["error_type"] == "ConfigError"
    error_line = next(i for i, r in enumerate(lines) if r.get("errorType") == "RunFailedError")
    assert lines.index(summary) < error_line and lines.index(emf) < error_line, "summary and metrics come first"

    # A payload the engine refuses before any run: the same error shape, summary line and RunFailed = 1.
    bad = fn.invoke({"job": "x", "backup": {"shard": {"index": 3, "count": 2}}})
    assert bad.status == 200 and bad.body["errorType"] == "RunFailedError", bad.body
    assert "backup.shard" in bad.body["errorMessage"] and "below count 2" in bad.body["errorMessage"]
    assert run_emf(fn, bad)["RunFailed"] == [1.0]
    refused = [r for r in fn.records(bad) if r.get("event") == "backup_run"]
    assert refused and refused[0]["error_type"] == "ConfigError" and refused[0]["exit_code"] == 2, refused

    # The instance is still good: a correct invocation afterwards succeeds.
    assert ok_summary(fn.invoke(scheduler_input("orders-shard-0", 0, 1)))["ok"] is True
