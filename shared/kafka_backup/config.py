"""Settings: pydantic models validated at the edge, so the engine only ever sees typed values.

A YAML file (``${ENV_VAR}`` and ``${ENV_VAR:-default}`` are interpolated before parsing), command
line flags and environment variables all end in one :class:`Settings`.  Every error is a
:class:`~kafka_backup.errors.ConfigError` naming the file, the field path and the reason.

Example::

    settings = load_settings("backup.yaml", overrides={"storage": {"url": "file:///tmp/bk"}})
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

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
# Upper bounds: one fetch response (fetch + one oversized partition + overhead) must stay below the
# raw client's 256 MiB receive limit, and a segment is held in memory while it fills.
MAX_FETCH_BYTES = 128 << 20
MAX_PARTITION_FETCH_BYTES = 64 << 20
MAX_SEGMENT_BYTES = 1 << 30
ENV_PREFIX = "KAFKA_BACKUP_"

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
    # retries (obstore's RetryConfig): 5xx and 429 answers, connection errors and dropped
    # connections, and timeouts of read-only requests; a run also bounds them by its deadline.
    # retry_timeout_seconds is the real bound; max_retries only a backstop.  object_store draws each
    # wait at random between the initial backoff and base x the previous one, so base 2 grows the
    # waits by about the initial backoff per retry only; base 3 grows them by about half each time.
    retry_max_retries: int = Field(30, ge=0, le=1000, description="Retries of one storage request (0: none).")
    retry_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="No retry starts later than this "
                                         "after a request's first attempt.")
    retry_backoff_initial_seconds: float = Field(0.1, gt=0, le=60)
    retry_backoff_max_seconds: float = Field(15.0, gt=0, le=600)
    retry_backoff_base: float = Field(3.0, gt=1, le=10)
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
        if self.retry_backoff_initial_seconds > self.retry_backoff_max_seconds:
            raise ValueError(f"retry_backoff_initial_seconds ({self.retry_backoff_initial_seconds}) exceeds "
                             f"retry_backoff_max_seconds ({self.retry_backoff_max_seconds})")
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
    #: Keyword arguments for the token provider callable (e.g. a scope or a client id).
    token_provider_options: dict[str, str] = Field(default_factory=dict)

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
    request_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    connect_timeout_seconds: float = Field(30.0, gt=0, le=3600,
                                           description="How long to try the bootstrap servers.")

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
    segment_max_bytes: int = Field(DEFAULT_SEGMENT_MAX_BYTES, ge=1 << 10, le=MAX_SEGMENT_BYTES,
                                   description="Raw batch bytes per segment (held in memory while it fills).")
    fetch_max_bytes: int = Field(DEFAULT_FETCH_MAX_BYTES, ge=1 << 10, le=MAX_FETCH_BYTES)
    partition_fetch_max_bytes: int = Field(DEFAULT_PARTITION_FETCH_MAX_BYTES, ge=1 << 10,
                                           le=MAX_PARTITION_FETCH_BYTES)
    zstd_level: int = Field(DEFAULT_ZSTD_LEVEL, ge=1, le=19)
    segment_min_bytes: int = Field(0, ge=0, le=MAX_SEGMENT_BYTES, description=(
        "Write policy: a partition is written in a run only when about this many new batch bytes wait, "
        "or its oldest unbacked record is older than max_lag_seconds (0: write every run)."))
    max_lag_seconds: float | None = Field(None, gt=0, description=(
        "The recovery-point objective of the write policy: a partition whose oldest record not yet "
        "backed up is this old is written whatever segment_min_bytes says."))
    shard: ShardConfig = ShardConfig()
    snapshot_metadata: bool = Field(True, description="Snapshot topic configs and group offsets.")
    orphan_grace_seconds: float = Field(6 * 3600, ge=0, description="Uncommitted segments older than this "
                                        "are removed; must exceed the longest run.")

    @field_validator("topics", "topic_patterns", "exclude_patterns", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "orders,payments" from an event, a flag or an app setting
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("topic_patterns", "exclude_patterns")
    @classmethod
    def _regex(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _policy(self) -> BackupConfig:
        if self.segment_min_bytes and self.max_lag_seconds is None:
            raise ValueError("segment_min_bytes needs max_lag_seconds (the recovery-point objective), or a "
                             "partition that trickles would never be written")
        return self

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        value = parse_time_ms(value) if isinstance(value, str) and value not in {"earliest", "latest"} else value
        if isinstance(value, int) and value < 0:
            raise ValueError("a start timestamp must be >= 0 (use 'earliest' or 'latest' by name)")
        return value


class Settings(_Model):
    """Everything a run needs.  Build it with :meth:`from_env` (functions), :func:`load_settings`
    (CLI: file, environment, flags) or :meth:`from_mapping` (a payload alone).

    Layers, lowest first: defaults < file (``KAFKA_BACKUP_CONFIG``: a path or a storage URL of a
    YAML object) < environment (``KAFKA_BACKUP_<SECTION>__<FIELD>``) < event or flags.
    """

    job: str | None = Field(None, description="A label for logs and metrics, e.g. the schedule's name.")
    kafka: KafkaConfig
    storage: StorageConfig
    backup: BackupConfig = BackupConfig()

    @classmethod
    def from_env(cls, prefix: str = ENV_PREFIX, *, environ: Mapping[str, str] | None = None,
                 event: Mapping[str, Any] | None = None, event_source: str = "event") -> Settings:
        """Settings for a function: optional file, then the environment, then the trigger's payload.

        ``event`` is the part of a schedule's payload that names or narrows the job (same shape as
        the settings, e.g. ``{"backup": {"shard": {"index": 0, "count": 4}}}``).
        """
        env = os.environ if environ is None else environ
        layers = [*_fallback_layer(env), *_file_layer(env.get(f"{prefix}CONFIG"), env), _env_layer(env, prefix)]
        if event:
            layers.append(_Layer(event_source, _event_data(event, event_source)))
        return _build(layers)

    @classmethod
    def from_mapping(cls, payload: Mapping[str, Any], *, source: str = "event") -> Settings:
        """Settings from one mapping (e.g. a whole job in an event payload); errors name ``source``."""
        return _build([_Layer(source, _event_data(payload, source))])


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
    return _parse_yaml(text, source)


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    import yaml  # only with a config file: a third of a settings-only start-up otherwise

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


def _format_validation(exc: ValidationError, source: str, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(msg + more, source=source, field=loc or None)


# Layers ----------------------------------------------------------------------------------------------
_SECTIONS = ("kafka", "storage", "backup")
#: ``KAFKA_BACKUP_*`` variables that are not settings (handler knobs, dev tooling).
_NOT_SETTINGS = frozenset({"CONFIG", "DEADLINE_MARGIN_SECONDS", "TIMEOUT_SECONDS", "SCHEDULE", "LOG_LEVEL",
                           "METRICS_NAMESPACE", "KEEP_SERVICES", "CACHE", "TOOLS_CACHE", "BENCH_DIR"})


class _Layer:
    """One source of settings: its name for errors, its data, and where each field came from."""

    def __init__(self, source: str, data: Mapping[str, Any], names: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.data = dict(data)
        #: dotted field path -> how the user wrote it (an environment variable's name, say)
        self.names = dict(names or {})


def _event_data(payload: Mapping[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise ConfigError(f"must be a JSON object, got {type(payload).__name__}", source=source)
    unknown = sorted(set(payload) - {"job", *_SECTIONS})
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: job, kafka, storage, backup",
                          source=source)
    return dict(payload)


def _env_layer(env: Mapping[str, str], prefix: str) -> _Layer:
    """``KAFKA_BACKUP_BACKUP__TOPICS=a,b`` -> ``{"backup": {"topics": ["a", "b"]}}``.

    Nested keys are joined with ``__`` (pydantic-settings' convention); list fields take JSON or
    comma-separated values.
    """
    data: dict[str, Any] = {}
    names: dict[str, str] = {}
    for var in sorted(env):
        if not var.startswith(prefix):
            continue
        rest = var[len(prefix):]
        if rest in _NOT_SETTINGS or ("__" not in rest and rest.lower() != "job"):
            continue
        path = [p.lower() for p in rest.split("__")]
        if path[0] not in (*_SECTIONS, "job") or not all(path):
            raise ConfigError(f"{var}: unknown settings section {path[0]!r} (expected KAFKA_BACKUP_KAFKA__…, "
                              "KAFKA_BACKUP_STORAGE__… or KAFKA_BACKUP_BACKUP__…)", source="environment")
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{var} conflicts with another variable", source="environment")
            node = child
        node[path[-1]] = _env_value(path, env[var], var)
        names[".".join(path)] = var
    return _Layer("environment", data, names)


def _fallback_layer(env: Mapping[str, str]) -> list[_Layer]:
    """``KAFKA_BOOTSTRAP_SERVERS``: the conventional variable, used only when nothing else names
    the brokers (so a config file's cluster is never silently replaced by a shell's default)."""
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        return []
    return [_Layer("environment", {"kafka": {"bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]}},
                   {"kafka.bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS"})]


def _list_field(path: list[str]) -> bool:
    model: Any = Settings
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return getattr(model, "__origin__", None) is list


def _env_value(path: list[str], raw: str, var: str) -> Any:
    text = raw.strip()
    if _list_field(path):
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"{var}: not a JSON list: {exc}", source="environment") from exc
            return value
        return [item.strip() for item in text.split(",") if item.strip()]
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{var}: not a JSON object: {exc}", source="environment") from exc
    return raw


def _file_layer(location: str | None, env: Mapping[str, str]) -> list[_Layer]:
    """The optional YAML file: a path, or a storage URL (``s3://bucket/conf/backup.yaml``)."""
    if not location:
        return []
    if "://" in location and not location.startswith("file://"):
        from .errors import StorageError
        from .storage import open_store

        base, _, name = location.rstrip("/").rpartition("/")
        if not name or "://" not in base:
            raise ConfigError(f"{redact_url(location)!r} does not name an object", source="KAFKA_BACKUP_CONFIG")
        try:
            text = open_store(base + "/").get(name).decode()
        except StorageError as exc:
            raise ConfigError(f"cannot read config object: {exc}", source=redact_url(location)) from exc
        data = _parse_yaml(text, redact_url(location))
        return [_Layer(redact_url(location), interpolate(data, env, source=redact_url(location)))]
    path = location.removeprefix("file://")
    return [_Layer(path, interpolate(_read_yaml(path), env, source=path))]


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; a storage section that names a location (url/backend) replaces the lower one."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            continue
        if key == "storage" and isinstance(value, Mapping) and ({"url", "backend"} & set(value)):
            out[key] = dict(value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _has(node: Any, path: list[str]) -> bool:
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _origin(layers: list[_Layer], loc: tuple[Any, ...]) -> tuple[str, str]:
    """Which layer supplied the field at ``loc`` (the highest one that has it), and its name there.

    A missing field belongs to the highest layer that wrote its section.
    """
    path = [str(p) for p in loc]
    for layer in reversed(layers):
        if _has(layer.data, path):
            return layer.source, layer.names.get(".".join(p for p in path if not p.isdigit()), "")
    for depth in range(len(path) - 1, 0, -1):
        for layer in reversed(layers):
            if _has(layer.data, path[:depth]):
                return layer.source, ""
    return (layers[-1].source if layers else "defaults"), ""


def _build(layers: list[_Layer]) -> Settings:
    data: dict[str, Any] = {}
    for layer in layers:
        data = _merge(data, layer.data)
    sources = " < ".join(layer.source for layer in layers) or "defaults"
    if not (data.get("kafka") or {}).get("bootstrap_servers"):
        raise ConfigError("no Kafka cluster: set KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS (or "
                          "KAFKA_BOOTSTRAP_SERVERS), pass --bootstrap-servers, or add kafka.bootstrap_servers "
                          "to the config file", source=sources, field="kafka.bootstrap_servers")
    if not data.get("storage"):
        raise ConfigError("no storage: set KAFKA_BACKUP_STORAGE__URL, pass --storage URL, or add a storage "
                          "section to the config file", source=sources, field="storage")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        if loc == ("storage",) and "url" in data["storage"]:  # the URL's own validator failed
            loc = ("storage", "url")
        source, name = _origin(layers, loc)
        err = _format_validation(exc, source)
        if loc == ("storage", "url"):
            err = ConfigError(str(err).removeprefix(f"{source}: storage: "), source=source, field="storage.url")
        if name and err.field:
            message = str(err).removeprefix(f"{source}: {err.field}: ")
            raise ConfigError(message, source=source, field=f"{err.field} ({name})") from exc
        raise err from exc
    except ValueError as exc:  # a storage URL that cannot be parsed
        raise ConfigError(str(exc), source=sources, field="storage.url") from exc


def load_settings(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None, overrides_source: str = "flags") -> Settings:
    """CLI settings: the YAML file (or ``KAFKA_BACKUP_CONFIG``), the environment, then ``overrides``.

    Every error names the layer the bad value came from (the file, ``environment`` with the
    variable's name, or ``flags``) and the field path.
    """
    env = os.environ if env is None else env
    layers = [*_fallback_layer(env),
              *_file_layer(str(path) if path is not None else env.get(f"{ENV_PREFIX}CONFIG"), env),
              _env_layer(env, ENV_PREFIX)]
    if overrides:
        layers.append(_Layer(overrides_source, {k: v for k, v in overrides.items() if v is not None}))
    return _build(layers)


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
