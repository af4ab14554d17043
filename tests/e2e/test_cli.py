"""The CLI end to end: kill -9 at every step of the commit protocol, corruption, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka_backup.storage import open_store

from tests.integration.conftest import backed_up_rows, chain_ranges, consume_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kafka_backup.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _config(tmp_path: Path, bootstrap: str, url: str, topic: str, **backup: Any) -> str:
    import yaml

    path = tmp_path / "backup.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": "${TEST_BOOTSTRAP}"},
        "storage": {"url": url},
        "backup": {"topics": [topic], "segment_max_bytes": 16 << 10, **backup},
    }))
    os.environ["TEST_BOOTSTRAP"] = bootstrap
    return str(path)


def _load(bootstrap: str, topic: str, n: int = 3000, partitions: int = 2) -> None:
    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, batch_size=2048) as p:
        for i in range(n):
            p.send(topic, key=str(i).encode(), value=b"r" * 64, partition=i % partitions,
                   headers=[("i", str(i).encode())])


@pytest.mark.parametrize("failpoint", ["before-upload", "during-upload", "after-upload", "after-commit"])
def test_kill_9_at_each_step_loses_nothing_and_duplicates_nothing(
        failpoint: str, bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(2)
    _load(bootstrap_servers, topic)
    url = f"file://{tmp_path / 'bk'}"
    cfg = _config(tmp_path, bootstrap_servers, url, topic, orphan_grace_seconds=0)
    crashed = cli("backup", "--config", cfg, env={"KAFKA_BACKUP_FAILPOINT": f"{failpoint}@3"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    store = open_store(url)
    committed_before = {p: chain_ranges(store, topic, p) for p in range(2)}
    resumed = cli("backup", "--config", cfg)
    assert resumed.returncode == 0, resumed.stderr
    for p in range(2):
        ranges = chain_ranges(store, topic, p)
        assert ranges[: len(committed_before[p])] == committed_before[p], "nothing committed was lost or rewritten"
        assert backed_up_rows(store, topic, p) == consume_all(bootstrap_servers, topic, p)
    verified = cli("verify", "--storage", url, "--json")
    assert verified.returncode == 0, verified.stdout
    report = json.loads(verified.stdout)
    assert report["ok"] and report["orphans"] == [], "the orphan of the crashed run was swept"


def test_orphans_younger_than_the_grace_period_are_kept_and_invisible(
        bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    topic = make_topic(1)
    _load(bootstrap_servers, topic, partitions=1)
    url = f"file://{tmp_path / 'bk'}"
    cfg = _config(tmp_path, bootstrap_servers, url, topic)
    assert cli("backup", "--config", cfg, env={"KAFKA_BACKUP_FAILPOINT": "after-upload@2"}).returncode < 0
    assert cli("backup", "--config", cfg).returncode == 0
    report = json.loads(cli("verify", "--storage", url, "--json").stdout)
    assert report["ok"] and len(report["orphans"]) == 1
    store = open_store(url)
    assert backed_up_rows(store, topic, 0) == consume_all(bootstrap_servers, topic, 0)
    gc = cli("gc", "--storage", url, "--older-than-seconds", "0")
    assert gc.returncode == 0 and "1 orphan segments removed" in gc.stdout
    assert json.loads(cli("verify", "--storage", url, "--json").stdout)["orphans"] == []


def test_verify_names_a_corrupted_and_a_truncated_segment(bootstrap_servers: str, make_topic: Any,
                                                           tmp_path: Path) -> None:
    topic = make_topic(2)
    _load(bootstrap_servers, topic)
    root = tmp_path / "bk"
    url = f"file://{root}"
    assert cli("backup", "--config", _config(tmp_path, bootstrap_servers, url, topic)).returncode == 0
    assert cli("verify", "--storage", url).returncode == 0
    seg0 = sorted((root / "topics" / topic / "0" / "segments").iterdir())[1]
    seg1 = sorted((root / "topics" / topic / "1" / "segments").iterdir())[0]
    data = bytearray(seg0.read_bytes())
    data[len(data) // 2] ^= 0x40
    seg0.write_bytes(bytes(data))
    seg1.write_bytes(seg1.read_bytes()[:-100])
    out = cli("verify", "--storage", url)
    assert out.returncode == 1
    assert f"topics/{topic}/0/segments/{seg0.name}" in out.stdout
    assert f"topics/{topic}/1/segments/{seg1.name}" in out.stdout
    assert "FAILED" in out.stdout


def test_gap_exit_code_and_listing(bootstrap_servers: str, make_topic: Any, admin: Any, tmp_path: Path) -> None:
    topic = make_topic(1)
    _load(bootstrap_servers, topic, n=100, partitions=1)
    url = f"file://{tmp_path / 'bk'}"
    assert cli("backup", "-b", bootstrap_servers, "-s", url, "-t", topic).returncode == 0
    _load(bootstrap_servers, topic, n=100, partitions=1)
    admin.delete_records({TopicPartition(topic, 0): 150})
    out = cli("backup", "-b", bootstrap_servers, "-s", url, "-t", topic)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "gaps 50" in out.stdout
    listing = cli("ls", "--storage", url)
    assert "gap [100, 150) 50 offsets lost to retention" in listing.stdout
    assert cli("verify", "--storage", url).returncode == 3


def test_output_and_exit_code_survive_the_prompt_exit(bootstrap_servers: str, make_topic: Any, tmp_path: Path) -> None:
    """The command line ends with ``os._exit`` (``cli.run``): what it printed must still arrive when
    stdout is a block-buffered pipe (no PYTHONUNBUFFERED), and the exit code must be the command's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    topic = make_topic(partitions=1)
    _load(bootstrap_servers, topic, n=500, partitions=1)
    url = f"file://{tmp_path}/bk"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kafka_backup.cli", *args], capture_output=True, text=True,
                              timeout=120, env=env)

    done = run("backup", "-b", bootstrap_servers, "-t", topic, "-s", url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["records"] == 500 and summary["ok"] is True
    assert "backup run" in done.stderr  # log records are flushed too
    listed = run("ls", "--storage", url, "--json")
    assert listed.returncode == 0 and topic in listed.stdout
    missing = run("cost", "--storage", f"file://{tmp_path}/empty")
    assert missing.returncode == 1 and "no backup found" in missing.stderr


def test_configuration_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {bootstrap_servers: 'localhost:9092'}\nstorage: {url: 'memory://'}\n"
                   "backup: {topics: [a], max_records: -5}\n")
    out = cli("backup", "--config", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "backup.max_records" in out.stderr
    missing = cli("backup", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    env_missing = tmp_path / "env.yaml"
    env_missing.write_text("kafka: {bootstrap_servers: '${NOT_SET_ANYWHERE}'}\nstorage: {url: 'memory://'}\n")
    out = cli("backup", "--config", str(env_missing), "-t", "x")
    assert out.returncode == 2 and "NOT_SET_ANYWHERE" in out.stderr
    out = cli("backup", "-b", "localhost:9092", "-s", "ftp://nowhere", "-t", "x")
    assert out.returncode == 2 and "ftp" in out.stderr


def test_secrets_never_reach_output(tmp_path: Path) -> None:
    secret = "SuperSecretValue123"
    out = cli("ls", "--storage", f"s3://bucket/p?endpoint=http://127.0.0.1:1&allow_http=true&secret_key={secret}"
              f"&access_key=AKIAEXAMPLE&region=us-east-1")
    assert secret not in out.stdout + out.stderr


def test_unreachable_kafka_exits_4(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: {bootstrap_servers: '127.0.0.1:1', connect_timeout_seconds: 2}\n"
                   f"storage: {{url: 'file://{tmp_path}/bk'}}\nbackup: {{topics: [x]}}\n")
    out = cli("backup", "--config", str(cfg), timeout=90)
    assert out.returncode == 4, out.stderr
