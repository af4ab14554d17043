"""Cluster metadata and admin operations through kafka-python's public admin client.

Everything here is public kafka-python API (the raw batch fetch, which is not, lives in
:mod:`kafka_backup._kafka_raw`).  kafka-python errors are translated into
:class:`~kafka_backup.errors.KafkaClientError` at this edge.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._kafka_errors import kafka_errors
from .config import BackupConfig, KafkaConfig, reveal
from .deadline import Deadline
from .errors import ConfigError, KafkaAuthError, KafkaBackupError, KafkaClientError
from .oauth import mask_in_kafka_logs

TopicPartition = tuple[str, int]


_SECRET_KEYS = ("sasl_plain_password", "ssl_password", "sasl_oauth_token_provider")


class _RedactSecrets(logging.Filter):
    """kafka-python logs its whole configuration at DEBUG (passwords included): mask them."""

    def filter(self, record: logging.LogRecord) -> bool:
        def mask(a: Any) -> Any:
            return {k: ("***" if k in _SECRET_KEYS and v else v) for k, v in a.items()} if isinstance(a, dict) else a

        if isinstance(record.args, dict):  # logging unwraps a lone dict argument
            record.args = mask(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(mask(a) for a in record.args)
        return True


def _guard_library_logs() -> None:
    for name in ("kafka", "kafka.admin.client"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _RedactSecrets) for f in lg.filters):
            lg.addFilter(_RedactSecrets())


def client_kwargs(cfg: KafkaConfig, deadline: Deadline | None = None) -> dict[str, Any]:
    """kafka-python connection settings (shared by admin, consumer, producer and raw fetch).

    With a ``deadline``, the connect and request timeouts never exceed the time left, so no single
    call can carry a run past it (at least one second each, so a call can still succeed).
    """
    from ._kafka_raw import check_internals

    check_internals()  # also installs the fix that lets a wrong password be reported as such
    _guard_library_logs()
    request_s, connect_s = cfg.request_timeout_seconds, cfg.connect_timeout_seconds
    if deadline is not None:
        request_s, connect_s = deadline.bound(request_s, floor=1.0), deadline.bound(connect_s, floor=1.0)
    kw: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": int(request_s * 1000),
        "bootstrap_timeout_ms": int(connect_s * 1000),
    }
    if cfg.tls is not None:
        kw.update(ssl_cafile=cfg.tls.ca_file, ssl_certfile=cfg.tls.cert_file, ssl_keyfile=cfg.tls.key_file,
                  ssl_check_hostname=cfg.tls.check_hostname)
        if cfg.tls.key_password is not None:
            kw["ssl_password"] = reveal(cfg.tls.key_password)
    if cfg.sasl is not None:
        kw["sasl_mechanism"] = cfg.sasl.mechanism
        if cfg.sasl.username is not None:
            kw["sasl_plain_username"] = cfg.sasl.username
        if cfg.sasl.password is not None:
            kw["sasl_plain_password"] = reveal(cfg.sasl.password)
            mask_in_kafka_logs(kw["sasl_plain_password"])
        if cfg.sasl.token_provider:
            factory = _load_callable(cfg.sasl.token_provider)
            try:
                provider = factory(**cfg.sasl.token_provider_options)
            except KafkaBackupError:
                raise
            except Exception as exc:
                raise ConfigError(f"token provider {cfg.sasl.token_provider!r} could not be created: "
                                  f"{type(exc).__name__}: {exc}", field="kafka.sasl.token_provider") from exc
            # Fail fast: inside kafka-python a provider's error is swallowed by the connect retries
            # and surfaces only as a bootstrap timeout.
            try:
                provider.token()
            except KafkaBackupError:
                raise
            except Exception as exc:
                raise KafkaAuthError(f"token provider {cfg.sasl.token_provider!r} could not get a token: "
                                     f"{type(exc).__name__}: {exc}") from exc
            kw["sasl_oauth_token_provider"] = provider
    return kw


def _load_callable(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot load token provider {spec!r}: {exc}", field="kafka.sasl.token_provider") from exc


translate = kafka_errors  # the one mapping of kafka-python errors (kept under its old name here)


def _topic_id(value: Any) -> str | None:
    """A topic id as text; the all-zero id means "none" (brokers before 2.8)."""
    text = str(value) if value is not None else ""
    return text if text and text.strip("0-") else None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    replication_factor: int
    internal: bool
    #: The topic's id (Metadata v10+, KIP-516): a topic deleted and recreated under the same name
    #: gets a new one.  None when the broker does not report ids.
    topic_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupOffset:
    offset: int
    metadata: str
    leader_epoch: int


class Cluster:
    """A connection to one Kafka cluster for metadata, offsets, configs and groups."""

    def __init__(self, cfg: KafkaConfig, *, deadline: Deadline | None = None) -> None:
        from kafka import KafkaAdminClient

        self.cfg = cfg
        with translate(f"connect to {','.join(cfg.bootstrap_servers)}", settings_errors=True, connecting=True):
            self.admin = KafkaAdminClient(**client_kwargs(cfg, deadline))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # topics ----------------------------------------------------------------------------------
    def topics(self, names: Iterable[str] | None = None) -> dict[str, TopicInfo]:
        with translate("describe topics"):
            described = self.admin.describe_topics(list(names) if names is not None else None)
        out = {}
        for t in described:
            if t.get("error_code", 0) != 0:
                continue
            parts = t["partitions"]
            rf = max((len(p.get("replica_nodes", [])) for p in parts), default=0)
            out[t["name"]] = TopicInfo(t["name"], len(parts), rf, bool(t.get("is_internal", False)),
                                       _topic_id(t.get("topic_id")))
        return out

    def select_topics(self, cfg: BackupConfig) -> dict[str, TopicInfo]:
        """Named topics plus pattern matches; internal topics only when named or allowed.

        An empty selection is a :class:`ConfigError`: a scheduled backup that silently backs up
        nothing would look healthy forever.
        """
        if not cfg.topics and not cfg.topic_patterns:
            raise ConfigError("nothing to back up: set backup.topics or backup.topic_patterns "
                              "(KAFKA_BACKUP_BACKUP__TOPICS, --topic)", field="backup.topics")
        every = self.topics()
        chosen: dict[str, TopicInfo] = {}
        missing = [name for name in cfg.topics if name not in every]
        if missing:
            raise ConfigError(f"topic(s) {', '.join(missing)} do not exist in the cluster", field="backup.topics")
        for name in cfg.topics:
            chosen[name] = every[name]
        for pattern in cfg.topic_patterns:
            rx = re.compile(pattern)
            for name, info in every.items():
                if rx.fullmatch(name) and (cfg.include_internal or not (info.internal or name.startswith("__"))):
                    chosen.setdefault(name, info)
        for pattern in cfg.exclude_patterns:
            rx = re.compile(pattern)
            chosen = {n: i for n, i in chosen.items() if not rx.fullmatch(n) or n in cfg.topics}
        if not chosen:
            raise ConfigError(f"backup.topic_patterns {cfg.topic_patterns} match no topic in the cluster "
                              "(after backup.exclude_patterns)", field="backup.topic_patterns")
        return dict(sorted(chosen.items()))

    def topic_configs(self, topics: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Every config key (not only overrides) with its value and whether it is a default."""
        from kafka.admin import ConfigResource, ConfigResourceType

        names = list(topics)
        if not names:
            return {}
        with translate("describe configs"):
            res = self.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names],
                                              config_filter="all")
        by_topic: dict[str, Any] = next((v for k, v in res.items() if str(k).lower() == "topic"), {})
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            entries = by_topic.get(name, {})
            out[name] = {k: {"value": v.get("value"), "source": str(v.get("config_source", "")),
                             "read_only": bool(v.get("read_only", False)),
                             "sensitive": bool(v.get("is_sensitive", False))}
                         for k, v in entries.items()}
        return out

    def create_topic(self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str]) -> None:
        with translate("create topic", topic=name):
            self.admin.create_topics({name: {"num_partitions": partitions, "replication_factor": replication_factor,
                                             "configs": dict(configs)}}, wait_for_metadata=True)

    def broker_count(self) -> int:
        with translate("describe cluster"):
            return len(self.admin.describe_cluster().get("brokers", [])) or 1

    # offsets ---------------------------------------------------------------------------------
    def offsets(self, tps: Iterable[TopicPartition], spec: str | int, *,
                committed: bool = True) -> dict[TopicPartition, int]:
        """Offsets per partition: "earliest" (log start), "latest" (the last stable offset, or the
        high watermark with ``committed=False``), or the first offset with timestamp >= spec
        (epoch ms; the end if there is none)."""
        from kafka import IsolationLevel, OffsetSpec
        from kafka import TopicPartition as KTP

        tps = list(tps)
        if not tps:
            return {}
        if spec == "earliest":
            wire: Any = OffsetSpec.EARLIEST
        elif spec == "latest":
            wire = OffsetSpec.LATEST
        else:
            wire = int(spec)
        with translate(f"list offsets ({spec})"):
            level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
            res = self.admin.list_partition_offsets({KTP(t, p): wire for t, p in tps}, isolation_level=level)
        out: dict[TopicPartition, int] = {}
        missing = []
        for tp, oat in res.items():
            if oat.offset is None or oat.offset < 0:
                missing.append((tp.topic, tp.partition))
            else:
                out[(tp.topic, tp.partition)] = oat.offset
        if missing:  # no record at or after the timestamp: the end of the partition
            out.update(self.offsets(missing, "latest", committed=committed))
        return out

    # consumer groups -------------------------------------------------------------------------
    def group_ids(self) -> list[str]:
        with translate("list groups"):
            groups = self.admin.list_groups()
        ids = []
        for g in groups:
            gid = g.get("group_id") if isinstance(g, dict) else g[0]
            if gid:
                ids.append(str(gid))
        return sorted(set(ids))

    def group_offsets(self, topics: Iterable[str] | None = None) -> dict[str, dict[TopicPartition, GroupOffset]]:
        """Committed offsets of every group, limited to ``topics`` when given.

        One OffsetFetch per group coordinator covering all its groups (OffsetFetch v8+, Kafka 3.0+),
        so a cluster with thousands of groups costs a handful of round trips, not one per group.
        """
        wanted = set(topics) if topics is not None else None
        gids = self.group_ids()
        if not gids:
            return {}
        with translate(f"list offsets of {len(gids)} group(s)"):
            res = self.admin.list_group_offsets({gid: None for gid in gids})
        out: dict[str, dict[TopicPartition, GroupOffset]] = {}
        for gid in gids:
            offsets = {}
            for tp, om in res.get(gid, {}).items():
                if (wanted is None or tp.topic in wanted) and om.offset is not None and om.offset >= 0:
                    epoch = getattr(om, "leader_epoch", None)
                    offsets[(tp.topic, tp.partition)] = GroupOffset(om.offset, om.metadata or "",
                                                                    -1 if epoch is None else int(epoch))
            if offsets:
                out[gid] = offsets
        return out

    def group_members(self, group_id: str) -> tuple[str, int]:
        """(state, member count) of a consumer group."""
        with translate(f"describe group {group_id}"):
            res = self.admin.describe_groups([group_id])
        info = res.get(group_id, {}) if isinstance(res, dict) else (res[0] if res else {})
        return str(info.get("group_state", info.get("state", ""))), len(info.get("members", []) or [])

    def commit_group_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata

        with translate(f"commit offsets of group {group_id}"):
            res = self.admin.alter_group_offsets(
                group_id, {KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        bad = {tp: err for tp, err in res.items() if getattr(err, "errno", 0) != 0}
        if bad:
            raise KafkaClientError(f"group {group_id}: offset commit failed for {bad}")


def committed_offsets(cfg: KafkaConfig, topic: str, partition: int, start: int, end: int) -> list[int]:
    """Offsets of the committed records in [start, end) of one partition (read_committed).

    Used by a resuming restore to see exactly what an interrupted run committed after its last
    checkpoint; aborted records and transaction markers are not counted.
    """
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    if end <= start:
        return []
    tp = KTP(topic, partition)
    out: list[int] = []
    with translate("read back the target", topic, partition):
        consumer = KafkaConsumer(**client_kwargs(cfg), group_id=None, enable_auto_commit=False,
                                 isolation_level="read_committed", max_partition_fetch_bytes=8 << 20)
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + cfg.request_timeout_seconds * 4
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise KafkaClientError(f"could not read offsets {start}..{end} back in time",
                                           topic=topic, partition=partition)
                for records in consumer.poll(timeout_ms=500).values():
                    out.extend(r.offset for r in records if r.offset < end)
        finally:
            consumer.close()
    return out
