"""Settings: pydantic models validated at the edge, so the engine only ever sees typed values.

A YAML file (``${ENV_VAR}`` and ``${ENV_VAR:-default}`` are interpolated before parsing), command
line flags and environment variables all end in one :class:`Settings`.  Every error is a
:class:`~kafka_backup.errors.ConfigError` naming the file, the field path and the reason.

Example::

    settings = load_settings("backup.yaml", overrides={"storage": {"url": "file:///tmp/bk"}})
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DEFAULT_SEGMENT_MAX_BYTES = 64 << 20
DEFAULT_FETCH_MAX_BYTES = 16 << 20
DEFAULT_PARTITION_FETCH_MAX_BYTES = 4 << 20  # larger costs memory and, in kafka-python, speed
DEFAULT_ZSTD_LEVEL = 3

Backend = Literal["s3", "azure", "gcs", "filesystem", "memory", "http"]

_FIELDS_BY_BACKEND: dict[str, set[str]] = {
    "s3": {"bucket", "endpoint", "region", "access_key", "secret_key", "session_token", "path_style"},
    "azure": {"account_name", "container_name", "account_key", "sas_token", "use_emulator", "endpoint"},
    "gcs": {"bucket", "service_account_path", "base_url", "skip_signature"},
    "filesystem": {"path"},
    "memory": {"name"},
    "http": {"http_url", "username", "password"},
}
_BACKEND_SPECIFIC = set().union(*_FIELDS_BY_BACKEND.values())
_REQUIRED: dict[str, tuple[str, ...]] = {
    "s3": ("bucket",), "azure": ("container_name",), "gcs": ("bucket",), "filesystem": ("path",),
    "memory": (), "http": ("http_url",),
}
_TRUE = {"1", "true", "yes", "on"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Model):
    """Where backups live. Give either ``url`` or ``backend`` with its fields (the original shape).

    ``path_style`` is the S3 addressing choice: ``true`` sends ``https://endpoint/bucket/key``
    (MinIO, Ceph, LocalStack); ``false`` (the AWS default) sends ``https://bucket.endpoint/key``.
    Static keys are allowed, never required: without them the platform identity is used.
    """

    url: str | None = Field(None, description="One URL: s3://, az://, abfs(s)://, azure://, gs://, gcs://, "
                            "file://, memory://, http(s):// (WebDAV).")
    backend: Backend = Field("filesystem", description="Backend when no url is given.")
    prefix: str = Field("", description="Key prefix under the bucket/container/folder.")
    # s3 / gcs
    bucket: str | None = None
    endpoint: str | None = Field(None, description="Custom endpoint (S3-compatibles, Azure emulator).")
    region: str | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    session_token: SecretStr | None = None
    path_style: bool | None = None
    # azure
    account_name: str | None = None
    container_name: str | None = None
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    use_emulator: bool = False
    # gcs
    service_account_path: str | None = None
    base_url: str | None = Field(None, description="GCS API base URL (emulators).")
    skip_signature: bool = False
    # filesystem / memory / http
    path: str | None = None
    name: str = Field("default", description="memory:// store name (one per process).")
    http_url: str | None = Field(None, description="WebDAV base URL (credentials go in username/password).")
    username: str | None = Field(None, description="WebDAV basic-auth user.")
    password: SecretStr | None = Field(None, description="WebDAV basic-auth password.")
    # transport
    allow_http: bool = Field(False, description="Permit plain-HTTP endpoints (emulators only).")
    request_timeout_seconds: float = Field(30.0, gt=0)
    options: dict[str, str] = Field(default_factory=dict, description="Extra obstore config keys.")

    @model_validator(mode="before")
    @classmethod
    def _expand_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("url"):
            parsed = parse_storage_url(str(data["url"]))
            if not parsed.get("prefix"):
                parsed.pop("prefix", None)  # a prefix given beside the URL still applies
            return {**data, **parsed, "url": redact_url(str(data["url"]))}
        return data

    @field_validator("endpoint", "base_url", "http_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"{value!r} must be an absolute http(s):// URL")
        return value

    @model_validator(mode="after")
    def _check_backend_fields(self) -> StorageConfig:
        allowed = _FIELDS_BY_BACKEND[self.backend]
        for name in sorted(_BACKEND_SPECIFIC - allowed - {"name", "use_emulator", "skip_signature"}):
            if getattr(self, name) is not None:
                raise ValueError(f"field {name!r} does not apply to backend {self.backend!r}")
        for name in _REQUIRED[self.backend]:
            if not getattr(self, name):
                raise ValueError(f"backend {self.backend!r} needs field {name!r}")
        if self.backend == "s3" and (self.access_key is None) != (self.secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither (to use the platform identity)")
        return self

    def display(self) -> str:
        """A URL naming this store, safe to log (never contains credentials)."""
        loc = {
            "s3": f"s3://{self.bucket}", "gcs": f"gs://{self.bucket}", "filesystem": f"file://{self.path}",
            "memory": f"memory://{self.name}", "http": redact_url(self.http_url or ""),
            "azure": f"az://{self.container_name}" + (f"@{self.account_name}" if self.account_name else ""),
        }[self.backend]
        return loc.rstrip("/") + (f"/{self.prefix.strip('/')}" if self.prefix.strip("/") else "")


def redact_url(url: str) -> str:
    """Drop userinfo and secret-looking query parameters so a URL can be logged."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc and ":" in parts.netloc.split("@")[0] \
        else parts.netloc
    query = "&".join(
        f"{k}=***" if re.search(r"key|secret|token|sig|password", k, re.I) else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def parse_storage_url(url: str) -> dict[str, Any]:
    """Translate a storage URL into :class:`StorageConfig` fields (query parameters become options).

    Accepted forms: ``s3://bucket/prefix?endpoint=…&region=…&path_style=true``,
    ``az://container/prefix``, ``azure://container@account.blob.core.windows.net/prefix``,
    ``abfs[s]://container@account.dfs.core.windows.net/prefix``, ``gs://`` or ``gcs://bucket/prefix``,
    ``file:///abs/path``, ``memory://[name]``, ``http(s)://host/path`` (WebDAV).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    host, path = parts.netloc, unquote(parts.path).strip("/")
    out: dict[str, Any] = {}
    if scheme in {"s3", "s3a"}:
        out = {"backend": "s3", "bucket": host, "prefix": path}
    elif scheme in {"az", "azure", "abfs", "abfss", "adl"}:
        container, _, account_host = host.partition("@")
        out = {"backend": "azure", "container_name": container, "prefix": path}
        if account_host:
            out["account_name"] = account_host.split(".", 1)[0]
            if "." in account_host and not account_host.endswith((".blob.core.windows.net",
                                                                  ".dfs.core.windows.net")):
                out["endpoint"] = f"https://{account_host}"  # sovereign clouds, private endpoints
    elif scheme in {"gs", "gcs"}:
        out = {"backend": "gcs", "bucket": host, "prefix": path}
    elif scheme == "file":
        if host not in {"", "localhost"}:
            raise ValueError(f"file URL must be file:///absolute/path, got {url!r}")
        out = {"backend": "filesystem", "path": "/" + path}
    elif scheme == "memory":
        out = {"backend": "memory", "name": host or "default", "prefix": path}
    elif scheme in {"http", "https"}:
        netloc = parts.netloc.rsplit("@", 1)[-1]
        base = parts._replace(netloc=netloc, query="", fragment="").geturl()
        out = {"backend": "http", "http_url": base if base.endswith("/") else base + "/"}
        if parts.username:
            out["username"] = unquote(parts.username)
            out["password"] = unquote(parts.password or "")
        if scheme == "http":
            out["allow_http"] = True
    else:
        raise ValueError(f"unsupported storage URL scheme {scheme!r} in {redact_url(url)!r}")
    known = set(StorageConfig.model_fields) - {"url", "backend", "options"}
    for key, value in query.items():
        if key in known:
            out[key] = value.lower() in _TRUE if key in {"path_style", "allow_http", "use_emulator",
                                                          "skip_signature"} else value
        else:
            out.setdefault("options", {})[key] = value
    return out


# --------------------------------------------------------------------------------------------- kafka
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"]


class TlsConfig(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True


class SaslConfig(_Model):
    """SASL settings. Secrets come from the environment (``${VAR}``) or a secret reference."""

    mechanism: SaslMechanism
    username: str | None = None
    password: SecretStr | None = None
    #: ``module:callable`` returning a kafka-python ``AbstractTokenProvider`` (OAUTHBEARER).
    token_provider: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SaslConfig:
        if self.mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} and not (self.username and self.password):
            raise ValueError(f"mechanism {self.mechanism} needs username and password")
        if self.mechanism == "OAUTHBEARER" and not self.token_provider:
            raise ValueError("mechanism OAUTHBEARER needs token_provider ('module:callable')")
        return self


class KafkaConfig(_Model):
    bootstrap_servers: list[str] = Field(..., min_length=1)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    tls: TlsConfig | None = None
    sasl: SaslConfig | None = None
    client_id: str = "kafka-backup"
    request_timeout_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(30.0, gt=0, description="How long to try the bootstrap servers.")

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _hostport(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", item):
                raise ValueError(f"{item!r} is not HOST:PORT")
        return value

    @model_validator(mode="after")
    def _check(self) -> KafkaConfig:
        if self.tls and "SSL" not in self.security_protocol:
            raise ValueError("tls is set but security_protocol is not SSL or SASL_SSL")
        if self.sasl and not self.security_protocol.startswith("SASL"):
            raise ValueError("sasl is set but security_protocol is not SASL_PLAINTEXT or SASL_SSL")
        if self.security_protocol.startswith("SASL") and not self.sasl:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl section")
        if self.sasl and self.sasl.mechanism == "AWS_MSK_IAM" and self.security_protocol != "SASL_SSL":
            raise ValueError("AWS_MSK_IAM needs security_protocol SASL_SSL")
        return self


# --------------------------------------------------------------------------------------------- backup
StartPosition = Literal["earliest", "latest"]


class ShardConfig(_Model):
    """Shard ``index`` of ``count``: a stable subset of partitions for scale-out fan-out."""

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        return self


class BackupConfig(_Model):
    """What to back up and how much per run."""

    topics: list[str] = Field(default_factory=list, description="Exact topic names.")
    topic_patterns: list[str] = Field(default_factory=list, description="Full-match regexes over names.")
    exclude_patterns: list[str] = Field(default_factory=list)
    include_internal: bool = Field(False, description="Match internal topics (__*) with patterns.")
    start: StartPosition | int = Field("earliest", description="Where a new partition's chain begins: "
                                       "earliest, latest, or a timestamp in epoch ms.")
    max_records: int | None = Field(None, gt=0, description="Per run, across partitions.")
    max_bytes: int | None = Field(None, gt=0, description="Per run, stored batch bytes.")
    max_seconds: float | None = Field(None, gt=0)
    segment_max_bytes: int = Field(DEFAULT_SEGMENT_MAX_BYTES, ge=1 << 10)
    fetch_max_bytes: int = Field(DEFAULT_FETCH_MAX_BYTES, ge=1 << 10)
    partition_fetch_max_bytes: int = Field(DEFAULT_PARTITION_FETCH_MAX_BYTES, ge=1 << 10)
    zstd_level: int = Field(DEFAULT_ZSTD_LEVEL, ge=1, le=19)
    shard: ShardConfig = ShardConfig()
    snapshot_metadata: bool = Field(True, description="Snapshot topic configs and group offsets.")
    orphan_grace_seconds: float = Field(6 * 3600, ge=0, description="Uncommitted segments older than this "
                                        "are removed; must exceed the longest run.")

    @field_validator("topic_patterns", "exclude_patterns")
    @classmethod
    def _regex(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        value = parse_time_ms(value) if isinstance(value, str) and value not in {"earliest", "latest"} else value
        if isinstance(value, int) and value < 0:
            raise ValueError("a start timestamp must be >= 0 (use 'earliest' or 'latest' by name)")
        return value


class Settings(_Model):
    kafka: KafkaConfig
    storage: StorageConfig
    backup: BackupConfig = BackupConfig()


# --------------------------------------------------------------------------------------------- loading
_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], *, source: str, field: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree.

    Done after parsing, so comments are never interpolated and a value cannot inject YAML;
    ``$${VAR}`` is a literal ``${VAR}``.  A missing variable without a default names its field.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env, source=source, field=f"{field}.{k}" if field else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, source=source, field=f"{field}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        escaped, name, default = match.group(1), match.group(2), match.group(3)
        if escaped:
            return match.group(0)[1:]
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set", source=source, field=field or None)

    return _ENV_REF.sub(sub, value)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=source) from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError("top level must be a mapping", source=source)
    return loaded or {}


def parse_time_ms(value: str | int) -> int:
    """Epoch milliseconds from an int, a digit string or an ISO-8601 time (UTC if no zone)."""
    from datetime import UTC, datetime

    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if value is None:
            continue
        if key == "storage":  # a storage override replaces the whole section (it may switch backend)
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation(exc: ValidationError, source: str, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(msg + more, source=source, field=loc or None)


def load_settings(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from an optional YAML file, then ``overrides`` (flags) on top.

    Without a file, ``KAFKA_BOOTSTRAP_SERVERS`` supplies the brokers when no flag does.
    """
    env = os.environ if env is None else env
    source = str(path) if path else "flags"
    data: dict[str, Any] = {}
    if path is not None:
        data = interpolate(_read_yaml(path), env, source=source)
    if overrides:
        data = _deep_merge(data, overrides)
    kafka = data.get("kafka") if isinstance(data.get("kafka"), dict) else None
    if (kafka is None or not kafka.get("bootstrap_servers")) and env.get("KAFKA_BOOTSTRAP_SERVERS"):
        data["kafka"] = {**(kafka or {}), "bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]}
    if "kafka" not in data:
        raise ConfigError("no Kafka cluster: pass --bootstrap-servers, set KAFKA_BOOTSTRAP_SERVERS, "
                          "or add kafka.bootstrap_servers to the config file", source=source)
    if "storage" not in data:
        raise ConfigError("no storage: pass --storage URL or add a storage section", source=source)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(exc, source) from exc


def storage_from_url(url: str, **fields: Any) -> StorageConfig:
    """Validate a storage URL (plus extra fields) into a :class:`StorageConfig`."""
    try:
        return StorageConfig.model_validate({"url": url, **fields})
    except ValidationError as exc:
        raise _format_validation(exc, "--storage") from exc
    except ValueError as exc:
        raise ConfigError(str(exc), source="--storage") from exc


# Secret references -----------------------------------------------------------------------------------
SecretResolver = Callable[[str], str]
_SECRET_RESOLVERS: dict[str, SecretResolver] = {}


def register_secret_resolver(scheme: str, resolver: SecretResolver) -> None:
    """Let a handler plug in its platform's secret store (e.g. ``secretsmanager:`` on AWS).

    The engine never imports a cloud SDK, so platform secrets arrive through this hook.
    """
    _SECRET_RESOLVERS[scheme] = resolver


def reveal(secret: SecretStr) -> str:
    """A secret's value; ``secretref:<scheme>:<ref>`` values are looked up (env:, file:, plug-ins)."""
    value = secret.get_secret_value()
    return resolve_secret(value[len("secretref:"):]) if value.startswith("secretref:") else value


def resolve_secret(ref: str) -> str:
    """Resolve ``env:NAME``, ``file:/path`` or a registered ``scheme:rest`` reference."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        if rest not in os.environ:
            raise ConfigError(f"secret reference {ref!r}: environment variable not set")
        return os.environ[rest]
    if scheme == "file":
        try:
            return Path(rest).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret reference {ref!r}: {exc.strerror}") from exc
    resolver = _SECRET_RESOLVERS.get(scheme)
    if resolver is None:
        raise ConfigError(f"secret reference {ref!r}: no resolver registered for {scheme!r}")
    return resolver(rest)


def load_storage_config(path: str | Path | None = None, url: str | None = None,
                        env: Mapping[str, str] | None = None) -> StorageConfig:
    """Only the storage section (for ``ls``/``verify``/``restore``, which may not need Kafka)."""
    if url:
        return storage_from_url(url)
    if path is None:
        raise ConfigError("no storage: pass --storage URL or --config FILE")
    env = os.environ if env is None else env
    source = str(path)
    data = _read_yaml(path)
    if "storage" not in data:
        raise ConfigError("no storage section", source=source)
    try:  # only this section is interpolated: ls/verify need no Kafka secrets in the environment
        return StorageConfig.model_validate(interpolate(data["storage"], env, source=source, field="storage"))
    except ValidationError as exc:
        raise _format_validation(exc, source, "storage") from exc


def load_backup_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> BackupConfig:
    """Only the backup section (defaults without a file), e.g. for ``gc``'s grace period."""
    if path is None:
        return BackupConfig()
    source = str(path)
    section = _read_yaml(path).get("backup") or {}
    try:
        return BackupConfig.model_validate(interpolate(section, os.environ if env is None else env,
                                                       source=source, field="backup"))
    except ValidationError as exc:
        raise _format_validation(exc, source, "backup") from exc
