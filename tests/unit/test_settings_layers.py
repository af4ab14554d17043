"""Settings from layers: defaults < file < environment < event (or flags), with errors naming the layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka_backup.config import MAX_FETCH_BYTES, Settings, load_settings
from kafka_backup.errors import ConfigError
from kafka_backup.storage import open_store

ENV = {
    "KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
    "KAFKA_BACKUP_STORAGE__URL": "s3://bucket/prefix?region=eu-west-1",
    "KAFKA_BACKUP_BACKUP__TOPICS": "orders,payments",
    "KAFKA_BACKUP_BACKUP__MAX_SECONDS": "600",
    # not settings: handler knobs and dev tooling share the prefix and must be ignored
    "KAFKA_BACKUP_KEEP_SERVICES": "1",
    "KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS": "30",
}


def test_environment_builds_nested_settings() -> None:
    s = Settings.from_env(environ=ENV)
    assert s.kafka.bootstrap_servers == ["b1:9092", "b2:9092"]
    assert (s.storage.backend, s.storage.bucket, s.storage.prefix, s.storage.region) == \
        ("s3", "bucket", "prefix", "eu-west-1")
    assert s.backup.topics == ["orders", "payments"]
    assert s.backup.max_seconds == 600.0


def test_json_values_and_deeper_nesting() -> None:
    env = {**ENV, "KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS": '["a,b", "c.*"]',
           "KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_BACKUP_KAFKA__SASL__MECHANISM": "SCRAM-SHA-512",
           "KAFKA_BACKUP_KAFKA__SASL__USERNAME": "svc",
           "KAFKA_BACKUP_KAFKA__SASL__PASSWORD": "secretref:env:PW",
           "KAFKA_BACKUP_BACKUP__SHARD": '{"index": 2, "count": 3}'}
    s = Settings.from_env(environ=env)
    assert s.backup.topic_patterns == ["a,b", "c.*"]  # JSON keeps a comma inside a regex
    assert s.kafka.sasl is not None and s.kafka.sasl.username == "svc"
    assert s.kafka.sasl.password is not None and s.kafka.sasl.password.get_secret_value() == "secretref:env:PW"
    assert (s.backup.shard.index, s.backup.shard.count) == (2, 3)


def test_event_overrides_environment() -> None:
    s = Settings.from_env(environ=ENV, event={"job": "orders-2", "backup": {"shard": {"index": 2, "count": 4},
                                                                            "topics": "orders"}})
    assert s.job == "orders-2"
    assert s.backup.topics == ["orders"]
    assert (s.backup.shard.index, s.backup.shard.count) == (2, 4)
    assert s.backup.max_seconds == 600.0  # untouched fields keep the environment's value


def test_file_is_below_environment(tmp_path: Path) -> None:
    f = tmp_path / "backup.yaml"
    f.write_text("kafka: {bootstrap_servers: 'f:1', client_id: from-file}\n"
                 "storage: {url: 'memory://filecfg'}\nbackup: {topics: [a], zstd_level: 7}\n")
    s = Settings.from_env(environ={**ENV, "KAFKA_BACKUP_CONFIG": str(f)})
    assert s.kafka.bootstrap_servers == ["b1:9092", "b2:9092"]  # environment wins
    assert s.kafka.client_id == "from-file"  # the file still supplies what the environment does not
    assert s.backup.zstd_level == 7
    assert s.storage.backend == "s3"  # a storage URL in a higher layer replaces the whole section


def test_file_from_a_storage_url() -> None:
    store = open_store("memory://cfgstore/conf")
    store.put("backup.yaml", b"kafka: {bootstrap_servers: 'u:1'}\nstorage: {url: 'memory://x'}\n"
                             b"backup: {topics: [from-url]}\n")
    s = Settings.from_env(environ={"KAFKA_BACKUP_CONFIG": "memory://cfgstore/conf/backup.yaml"})
    assert s.backup.topics == ["from-url"] and s.kafka.bootstrap_servers == ["u:1"]
    with pytest.raises(ConfigError, match="cannot read config object"):
        Settings.from_env(environ={"KAFKA_BACKUP_CONFIG": "memory://cfgstore/conf/missing.yaml"})


def test_kafka_bootstrap_servers_is_only_a_fallback(tmp_path: Path) -> None:
    s = Settings.from_env(environ={"KAFKA_BOOTSTRAP_SERVERS": "fallback:9", "KAFKA_BACKUP_STORAGE__URL": "memory://"})
    assert s.kafka.bootstrap_servers == ["fallback:9"]
    f = tmp_path / "c.yaml"
    f.write_text("kafka: {bootstrap_servers: 'file:1'}\nstorage: {url: 'memory://'}\n")
    assert load_settings(f, env={"KAFKA_BOOTSTRAP_SERVERS": "fallback:9"}).kafka.bootstrap_servers == ["file:1"]


@pytest.mark.parametrize(("event", "message"), [
    ({"backup": {"shard": {"index": 5, "count": 4}}}, "event: backup.shard: index 5 must be below count 4"),
    ({"backup": {"fetch_max_bytes": 10**10}}, "event: backup.fetch_max_bytes: "),
    ({"backupp": {}}, "event: unknown key(s) 'backupp'"),
    ({"storage": {"url": "ftp://x/y"}}, "event: storage.url: unsupported storage URL scheme 'ftp'"),
])
def test_event_errors_name_the_event_and_field(event: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(environ=ENV, event=event)
    assert str(err.value).startswith(message), str(err.value)
    assert "flags" not in str(err.value)


@pytest.mark.parametrize(("extra", "message"), [
    ({"KAFKA_BACKUP_BACKUP__FETCH_MAX_BYTES": str(MAX_FETCH_BYTES + 1)},
     "environment: backup.fetch_max_bytes (KAFKA_BACKUP_BACKUP__FETCH_MAX_BYTES): Input should be less than"),
    ({"KAFKA_BACKUP_BACKUP__TOPIC": "x"}, "environment: backup.topic (KAFKA_BACKUP_BACKUP__TOPIC): Extra inputs"),
    ({"KAFKA_BACKUP_BACKUPS__TOPICS": "x"}, "environment: KAFKA_BACKUP_BACKUPS__TOPICS: unknown settings section"),
    ({"KAFKA_BACKUP_KAFKA__REQUEST_TIMEOUT_SECONDS": "-1"},
     "environment: kafka.request_timeout_seconds (KAFKA_BACKUP_KAFKA__REQUEST_TIMEOUT_SECONDS): "),
    ({"KAFKA_BACKUP_BACKUP__SEGMENT_MAX_BYTES": str(2 << 30)}, "environment: backup.segment_max_bytes"),
])
def test_environment_errors_name_the_variable(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(environ={**ENV, **extra})
    assert str(err.value).startswith(message), str(err.value)


def test_missing_cluster_or_storage_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS"):
        Settings.from_env(environ={"KAFKA_BACKUP_STORAGE__URL": "memory://"})
    with pytest.raises(ConfigError, match="KAFKA_BACKUP_STORAGE__URL"):
        Settings.from_env(environ={"KAFKA_BOOTSTRAP_SERVERS": "a:1"})


def test_flags_are_the_top_layer_and_named_as_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, overrides={"backup": {"max_records": 0}}, env=ENV)
    assert str(err.value).startswith("flags: backup.max_records"), str(err.value)


def test_from_mapping_alone() -> None:
    s = Settings.from_mapping({"kafka": {"bootstrap_servers": "m:1"}, "storage": {"url": "memory://"}},
                              source="job orders")
    assert s.kafka.bootstrap_servers == ["m:1"]
    with pytest.raises(ConfigError, match=r"^job orders: backup\.zstd_level"):
        Settings.from_mapping({"kafka": {"bootstrap_servers": "m:1"}, "storage": {"url": "memory://"},
                               "backup": {"zstd_level": 99}}, source="job orders")
