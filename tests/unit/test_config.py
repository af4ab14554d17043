"""Settings: URL forms, the original storage shape, interpolation, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka_backup.config import (
    load_settings,
    load_storage_config,
    parse_time_ms,
    redact_url,
    register_secret_resolver,
    resolve_secret,
    storage_from_url,
)
from kafka_backup.errors import ConfigError
from kafka_backup.storage import _open_s3


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://bkt/a/b", {"backend": "s3", "bucket": "bkt", "prefix": "a/b"}),
    ("s3://bkt?endpoint=http://minio:9000&region=eu-west-1&path_style=true",
     {"backend": "s3", "bucket": "bkt", "endpoint": "http://minio:9000", "region": "eu-west-1", "path_style": True}),
    ("az://cont/p", {"backend": "azure", "container_name": "cont", "prefix": "p"}),
    ("azure://cont@acct.blob.core.windows.net/p", {"backend": "azure", "container_name": "cont",
                                                   "account_name": "acct", "prefix": "p"}),
    ("abfss://cont@acct.dfs.core.windows.net/x", {"backend": "azure", "account_name": "acct", "prefix": "x"}),
    ("gs://b/p", {"backend": "gcs", "bucket": "b", "prefix": "p"}),
    ("gcs://b", {"backend": "gcs", "bucket": "b", "prefix": ""}),
    ("file:///var/bk", {"backend": "filesystem", "path": "/var/bk"}),
    ("memory://", {"backend": "memory", "name": "default"}),
    ("https://dav.example.com/remote.php/dav/", {"backend": "http", "http_url": "https://dav.example.com/remote.php/dav/"}),
])
def test_url_forms(url: str, expected: dict[str, object]) -> None:
    cfg = storage_from_url(url)
    for key, value in expected.items():
        assert getattr(cfg, key) == value, key


def test_original_backend_shape_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("""
kafka: {bootstrap_servers: "b1:9092,b2:9092"}
storage:
  backend: s3
  endpoint: http://minio:9000
  bucket: backups
  region: us-east-1
  access_key: ${AK}
  secret_key: ${SK:-fallback}
  path_style: true
backup: {topics: [orders]}
""")
    s = load_settings(f, env={"AK": "key-id"})
    assert s.kafka.bootstrap_servers == ["b1:9092", "b2:9092"]
    assert s.storage.access_key is not None and s.storage.access_key.get_secret_value() == "key-id"
    assert s.storage.secret_key is not None and s.storage.secret_key.get_secret_value() == "fallback"
    assert "fallback" not in repr(s) and "key-id" not in repr(s)


def test_path_style_addressing() -> None:
    path = _open_s3(storage_from_url("s3://bkt?endpoint=http://minio:9000&path_style=true&allow_http=true"), {}, {})
    assert path.config.get("virtual_hosted_style_request") in (False, "false", None)
    assert "minio:9000" in str(path.config.get("endpoint"))
    hosted = _open_s3(storage_from_url("s3://bkt?endpoint=https://s3.example.com"), {}, {})
    assert str(hosted.config.get("endpoint")).startswith("https://bkt.s3.example.com")
    aws = _open_s3(storage_from_url("s3://bkt?region=eu-west-1"), {}, {})
    assert aws.config.get("virtual_hosted_style_request") in (True, "true")


@pytest.mark.parametrize(("text", "field", "reason"), [
    ("kafka: {bootstrap_servers: 'nohost'}\nstorage: {url: 'memory://'}", "kafka.bootstrap_servers", "HOST:PORT"),
    ("kafka: {bootstrap_servers: 'h:1'}\nstorage: {backend: s3}", "storage", "needs field 'bucket'"),
    ("kafka: {bootstrap_servers: 'h:1'}\nstorage: {backend: filesystem, path: /x, bucket: b}", "storage",
     "does not apply"),
    ("kafka: {bootstrap_servers: 'h:1'}\nstorage: {url: 'memory://'}\nbackup: {shard: {index: 3, count: 2}}",
     "backup.shard", "below count"),
    ("kafka: {bootstrap_servers: 'h:1'}\nstorage: {url: 'memory://'}\nbackup: {topic_patterns: ['(']}",
     "backup.topic_patterns", "invalid regex"),
    ("kafka: {bootstrap_servers: 'h:1'}\nstorage: {url: 'memory://'}\nbackup: {colour: red}", "backup.colour",
     "Extra inputs"),
    ("kafka: {bootstrap_servers: 'h:1', security_protocol: SASL_SSL}\nstorage: {url: 'memory://'}", "kafka",
     "needs a sasl section"),
])
def test_errors_name_file_field_and_reason(tmp_path: Path, text: str, field: str, reason: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(f, env={})
    assert str(f) in str(info.value) and field in str(info.value) and reason in str(info.value)


def test_missing_env_var_names_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("kafka:\n  bootstrap_servers: ${BROKERS}\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers: environment variable BROKERS is not set"):
        load_settings(f, env={})


def test_flags_override_file_and_storage_url_replaces_section(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("kafka: {bootstrap_servers: 'a:1'}\nstorage: {backend: s3, bucket: b}\nbackup: {topics: [x]}\n")
    s = load_settings(f, overrides={"kafka": {"bootstrap_servers": "z:9"}, "storage": {"url": "file:///tmp/q"},
                                    "backup": {"max_seconds": 5}}, env={})
    assert s.kafka.bootstrap_servers == ["z:9"] and s.storage.backend == "filesystem"
    assert s.backup.max_seconds == 5 and s.backup.topics == ["x"]


def test_bootstrap_from_environment_when_no_file() -> None:
    s = load_settings(None, overrides={"storage": {"url": "memory://"}}, env={"KAFKA_BOOTSTRAP_SERVERS": "e:1"})
    assert s.kafka.bootstrap_servers == ["e:1"]
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings(None, overrides={"storage": {"url": "memory://"}}, env={})


def test_storage_only_loading(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("storage: {backend: gcs, bucket: b, service_account_path: /sa.json}\n")
    assert load_storage_config(f).bucket == "b"
    with pytest.raises(ConfigError, match=r"storage\.bucket"):
        f.write_text("storage: {backend: gcs, bucket: [1]}\n")
        load_storage_config(f)


def test_redaction_and_times() -> None:
    red = redact_url("s3://b?secret_key=abc&region=x&sig=zz")
    assert "abc" not in red and "zz" not in red and "region=x" in red
    assert "pw" not in redact_url("https://user:pw@host/path")
    assert parse_time_ms("2024-01-01T00:00:00Z") == 1704067200000
    assert parse_time_ms("1704067200000") == 1704067200000
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time_ms("yesterday")


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_PW", "pw1")
    (tmp_path / "s").write_text("pw2\n")
    register_secret_resolver("vault", lambda ref: f"from-vault:{ref}")
    assert resolve_secret("env:KB_PW") == "pw1"
    assert resolve_secret(f"file:{tmp_path / 's'}") == "pw2"
    assert resolve_secret("vault:kafka/pw") == "from-vault:kafka/pw"
    with pytest.raises(ConfigError, match="no resolver"):
        resolve_secret("nope:x")


def test_storage_errors_mask_signed_url_secrets() -> None:
    from kafka_backup.storage import _first_line

    text = _first_line(RuntimeError("GET https://a.blob.core.windows.net/c/k?sv=1&sig=S3CR3T&se=2 failed: 403"))
    assert "S3CR3T" not in text and "sig=***" in text


def test_webdav_credentials_move_out_of_the_url() -> None:
    import base64

    from kafka_backup.storage import open_store

    cfg = storage_from_url("https://backup:pa%40ss@dav.example.com/remote.php/dav/")
    assert cfg.http_url == "https://dav.example.com/remote.php/dav/" and cfg.username == "backup"
    assert "pa@ss" not in repr(cfg) and "pa@ss" not in cfg.display()
    store = open_store(cfg)
    headers = {k.lower(): v for k, v in store._inner.client_options["default_headers"].items()}
    value = headers["authorization"]
    assert (value.decode() if isinstance(value, bytes) else value) == \
        "Basic " + base64.b64encode(b"backup:pa@ss").decode()


def test_kafka_client_debug_logs_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from kafka_backup.cluster import client_kwargs
    from kafka_backup.config import KafkaConfig

    cfg = KafkaConfig.model_validate({"bootstrap_servers": "h:1", "security_protocol": "SASL_SSL",
                                      "sasl": {"mechanism": "PLAIN", "username": "u", "password": "hunter2"}})
    kw = client_kwargs(cfg)
    assert kw["sasl_plain_password"] == "hunter2"
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        logging.getLogger("kafka.admin.client").debug("Starting KafkaAdminClient with configuration: %s", kw)
    assert "hunter2" not in caplog.text and "***" in caplog.text
