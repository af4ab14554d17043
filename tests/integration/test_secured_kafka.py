"""Backup and restore through the local broker's secured listener: TLS with SCRAM-SHA-512 and with
OAUTHBEARER (Kafka's unsecured JWT validator, fed by ``kafka_backup.oauth.UnsecuredJwtTokenProvider``).

The listener only speaks SASL_SSL, and the broker advertises SASL_SSL endpoints to clients that
bootstrap from it, so every connection of a run configured with it is encrypted, certificate-checked
(host name included) and authenticated.  The topics are created and read back over PLAINTEXT: that
path is independent of the one under test.

The CLI cases run ``kafka-backup`` as a subprocess with a YAML file whose password comes from the
environment: a wrong password and a CA that did not sign the broker are configuration errors
(exit 2) with a message that says so and never shows the password; so is a token provider that
cannot be imported.  They use a short ``connect_timeout_seconds``: kafka-python keeps retrying a
failed bootstrap until that timeout.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer
from kafka_backup import run_backup, run_restore
from kafka_backup.restore import RestoreOptions
from kafka_backup.storage import open_store

from tests.integration.conftest import (
    Row,
    SecureKafka,
    backed_up_rows,
    consume_all,
    secure_kafka_settings,
    secure_settings,
)

pytestmark = pytest.mark.integration

#: Bounds each failing CLI run: kafka-python retries a failed bootstrap until this timeout.
CLI_CONNECT_TIMEOUT_S = 4
PASSWORD_VAR = "KB_TEST_SECURED_KAFKA_PASSWORD"


def _produce(producer: KafkaProducer, topic: str, partitions: int, per_partition: int) -> None:
    """Keys, values, headers, explicit timestamps and a tombstone in every partition."""
    for p in range(partitions):
        for i in range(per_partition):
            value = None if i == per_partition - 1 else b"value-%d-%d-" % (p, i) + secrets.token_bytes(64)
            producer.send(topic, key=b"k%d" % i, value=value, partition=p, timestamp_ms=1_700_000_000_000 + i,
                          headers=[("n", b"%d" % i), ("p", bytes([p]))])
    producer.flush()


def _content(rows: list[Row]) -> list[tuple[Any, ...]]:
    return [r[1:] for r in rows]  # all but the offset


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "OAUTHBEARER"])
def test_backup_and_restore_round_trip(mechanism: str, secure_kafka: SecureKafka, bootstrap_servers: str,
                                       make_topic: Any, producer: KafkaProducer, tmp_path: Path) -> None:
    topic = make_topic(2, prefix="sec")
    _produce(producer, topic, 2, 25)
    url = f"file://{tmp_path / 'backup'}"

    result = run_backup(secure_settings(secure_kafka, mechanism, url, [topic]))
    assert result.ok, result.errors
    assert result.records == 50
    store = open_store(url)
    source = {p: consume_all(bootstrap_servers, topic, p) for p in range(2)}
    for p in range(2):
        assert len(source[p]) == 25
        assert backed_up_rows(store, topic, p) == source[p], f"partition {p}"

    restored = run_restore(secure_settings(secure_kafka, mechanism, url, []),
                           RestoreOptions(topic=topic, to_topic=f"{topic}-r"))
    assert restored.ok and restored.created_topic and restored.records == 50
    for p in range(2):
        target = consume_all(bootstrap_servers, f"{topic}-r", p)
        assert target and _content(target) == _content(source[p]), f"partition {p}"
        assert target[-1][4] is None, "the tombstone survives"


# ----------------------------------------------------------------------------------------- the CLI
def _cli_config(tmp_path: Path, secure: SecureKafka, topic: str, *, name: str, **kafka: Any) -> Path:
    """A YAML file whose SCRAM password is ``${PASSWORD_VAR}``; ``kafka`` overrides parts of the section."""
    section = secure_kafka_settings(secure, "SCRAM-SHA-512", connect_timeout_seconds=CLI_CONNECT_TIMEOUT_S,
                                    request_timeout_seconds=10)
    section["sasl"]["password"] = "${" + PASSWORD_VAR + "}"
    for key, value in kafka.items():
        section[key] = {**section[key], **value} if isinstance(value, dict) else value
    doc = {"kafka": section, "storage": {"url": f"file://{tmp_path / name}"}, "backup": {"topics": [topic]}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert secure.password not in path.read_text()
    return path


def _kafka_backup(config: Path, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kafka-backup")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "kafka_backup.cli"]
    env = {**os.environ, PASSWORD_VAR: password}
    return subprocess.run([*argv, *extra, "backup", "--config", str(config), "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_backup_with_right_and_wrong_password(secure_kafka: SecureKafka, make_topic: Any,
                                                  producer: KafkaProducer, tmp_path: Path) -> None:
    topic = make_topic(1, prefix="sec-cli")
    _produce(producer, topic, 1, 10)
    config = _cli_config(tmp_path, secure_kafka, topic, name="ok")
    ok = _kafka_backup(config, secure_kafka.password)
    assert ok.returncode == 0, ok.stderr
    assert backed_up_rows(open_store(f"file://{tmp_path / 'ok'}"), topic, 0), "records were backed up"

    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    bad = _kafka_backup(_cli_config(tmp_path, secure_kafka, topic, name="bad"), wrong, "--log-level", "DEBUG")
    output = bad.stdout + bad.stderr
    assert wrong not in output and secure_kafka.password not in output
    assert bad.returncode == 2, f"exit {bad.returncode}: {bad.stderr[-2000:]}"
    assert "authentication" in bad.stderr.lower(), bad.stderr[-2000:]


def test_cli_rejects_a_broker_certificate_from_an_untrusted_ca(secure_kafka: SecureKafka, make_topic: Any,
                                                               tmp_path: Path) -> None:
    topic = make_topic(1, prefix="sec-ca")
    config = _cli_config(tmp_path, secure_kafka, topic, name="ca", tls={"ca_file": secure_kafka.untrusted_ca_file})
    proc = _kafka_backup(config, secure_kafka.password)
    assert secure_kafka.password not in proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "certificate" in proc.stderr.lower(), proc.stderr[-2000:]


def test_cli_token_provider_that_cannot_be_loaded(secure_kafka: SecureKafka, make_topic: Any,
                                                  tmp_path: Path) -> None:
    topic = make_topic(1, prefix="sec-tp")
    config = _cli_config(tmp_path, secure_kafka, topic, name="tp", sasl={
        "mechanism": "OAUTHBEARER", "username": None, "password": None,
        "token_provider": "kafka_backup_no_such_module.oauth:Provider"})
    proc = _kafka_backup(config, secure_kafka.password)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "kafka.sasl.token_provider" in proc.stderr, proc.stderr[-2000:]
    assert "kafka_backup_no_such_module" in proc.stderr
