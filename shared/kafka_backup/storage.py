"""One small interface over obstore, opened from a URL or a :class:`~kafka_backup.config.StorageConfig`.

Why a wrapper: the commit protocol needs exactly one conditional primitive, *create-if-absent*,
and backends offer it differently (``put(mode="create")`` on S3, Azure, GCS, local and memory; a
temporary object plus ``copy(overwrite=False)`` on WebDAV).  :meth:`Store.put_if_absent` hides
that, and every obstore/builtin error is translated here into :mod:`kafka_backup.errors`.

Keys are relative to the configured prefix; the prefix is applied here for every backend alike.

Retries are obstore's own (``storage.retry_*``: 5xx and 429 answers, connection errors, dropped
connections and read timeouts, with exponential backoff and jitter).  A store bound to a deadline
(:meth:`Store.bounded`, what every backup run does) shrinks the request timeout and the retry
budget as the deadline nears, so no single storage call outlives it: obstore's retry loop runs in
Rust and cannot be interrupted from Python, so it must be configured not to need that.

Example::

    store = open_store("file:///var/backups/kafka")
    store.put_if_absent("t/0/commits/00000000000000000000", b"{...}")   # ObjectExists if present
"""

from __future__ import annotations

import builtins
import contextlib
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore import exceptions as obx
from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, MemoryStore, S3Store

from .config import StorageConfig, reveal, storage_from_url
from .deadline import Deadline
from .errors import (
    ConfigError,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StorageAuthError,
    StorageError,
    StorageUnsupported,
)

_MEMORY_STORES: dict[str, MemoryStore] = {}
_MEMORY_LOCK = threading.Lock()
TMP_MARKER = ".tmp-"
MULTIPART_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    e_tag: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class PutResult:
    e_tag: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class RetryLimits:
    """How long one storage call may take: obstore's per-attempt timeout and its retry settings."""

    request_timeout: float
    max_retries: int
    retry_timeout: float
    backoff_initial: float
    backoff_max: float
    backoff_base: float

    @classmethod
    def of(cls, cfg: StorageConfig) -> RetryLimits:
        return cls(cfg.request_timeout_seconds, cfg.retry_max_retries, cfg.retry_timeout_seconds,
                   cfg.retry_backoff_initial_seconds, cfg.retry_backoff_max_seconds, cfg.retry_backoff_base)

    @property
    def worst_case(self) -> float:
        """Seconds one call can last: retries start until ``retry_timeout``, each after at most
        ``backoff_max``, and the last attempt may take a whole ``request_timeout``."""
        if not self.max_retries:
            return self.request_timeout
        return self.retry_timeout + self.backoff_max + self.request_timeout

    def within(self, seconds: float) -> RetryLimits:
        """These limits, shrunk so that one call fits in ``seconds`` (but always one attempt of at
        least a second, so a call made at the deadline can still succeed).  The attempt gets most
        of the time: a slow upload that progresses is worth more than retries near the end."""
        if self.worst_case <= seconds:
            return self
        request = max(1.0, min(self.request_timeout, seconds * 0.75))
        rest = seconds - request
        backoff_max = min(self.backoff_max, rest / 4)
        retry = min(self.retry_timeout, rest - backoff_max)
        if retry < 0.5 or backoff_max < self.backoff_initial:
            return replace(self, request_timeout=request, max_retries=0)
        return replace(self, request_timeout=request, retry_timeout=retry, backoff_max=backoff_max)

    def client_options(self) -> dict[str, Any]:
        return {"timeout": timedelta(seconds=self.request_timeout)}

    def retry_config(self) -> dict[str, Any]:
        """obstore's ``RetryConfig`` (a TypedDict) for these limits."""
        return {"max_retries": self.max_retries, "retry_timeout": timedelta(seconds=self.retry_timeout),
                "backoff": {"init_backoff": timedelta(seconds=self.backoff_initial),
                            "max_backoff": timedelta(seconds=self.backoff_max), "base": self.backoff_base}}


@contextlib.contextmanager
def _translate(op: str, key: str | None, where: str) -> Iterator[None]:
    """Map obstore and builtin errors onto ours; the message names the store and key, never secrets."""
    name = f"{where}/{key}" if key else where
    try:
        yield
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{op}: {name} does not exist", key=key) from exc
    except obx.AlreadyExistsError as exc:
        raise ObjectExists(f"{op}: {name} already exists", key=key) from exc
    except obx.PreconditionError as exc:
        raise PreconditionFailed(f"{op}: {name} changed since it was read", key=key) from exc
    except obx.UnknownConfigurationKeyError as exc:
        raise ConfigError(f"storage.options: {_first_line(exc)}", source="storage") from exc
    except (NotImplementedError, obx.NotSupportedError) as exc:
        raise StorageUnsupported(f"{op}: not supported by this backend ({where})", key=key) from exc
    except obx.PermissionDeniedError as exc:
        raise StorageAuthError(f"{op}: permission denied on {name} (check the identity's role on it)",
                               key=key) from exc
    except obx.UnauthenticatedError as exc:
        raise StorageAuthError(f"{op}: not authenticated to {where} (check the identity or keys)", key=key) from exc
    except obx.BaseError as exc:
        raise StorageError(f"{op} {name}: {_first_line(exc)}", key=key) from exc
    except OSError as exc:
        raise StorageError(f"{op} {name}: {exc}", key=key) from exc


_SECRET_PARAM = re.compile(r"(?i)([?&](?:sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
                           r"access_token|token|code)=)[^&\s\"']+")


def _first_line(exc: BaseException) -> str:
    """The first line of a library error, with signed-URL secrets (SAS ``sig``, presign) masked."""
    text = str(exc).strip().splitlines()
    return _SECRET_PARAM.sub(r"\1***", text[0][:500]) if text else type(exc).__name__


class Store:
    """A bucket/container/folder plus key prefix. Thread-safe; cheap to share within a run.

    ``opener`` (given by :func:`open_store` for the network backends) re-creates the inner obstore
    store with other :class:`RetryLimits`; ``limits`` are the configured ones.  Both are what lets
    :meth:`bounded` keep every call inside a deadline.
    """

    def __init__(self, inner: Any, *, prefix: str = "", display: str, create_via_copy: bool = False,
                 opener: Callable[[RetryLimits], Any] | None = None, limits: RetryLimits | None = None) -> None:
        self._inner_store = inner
        self._prefix = prefix.strip("/")
        self.display = display
        #: WebDAV has no conditional put; create-if-absent goes through COPY with Overwrite: F.
        self.create_via_copy = create_via_copy
        self._opener = opener
        self.limits = limits
        self._deadline: Deadline | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.display!r})"

    def bounded(self, deadline: Deadline | None) -> Store:
        """This store (same location, same objects) with every call kept inside ``deadline``.

        The request timeout and the retry budget are shrunk whenever the time left no longer
        covers one call's worst case (to 80 % of the time left, so re-opening happens about every
        fifth of the remaining time, never per call).  Stores without retries (local folder, memory) and a
        ``None`` deadline return ``self``.
        """
        if deadline is None or self._opener is None or self.limits is None:
            return self
        other = Store(self._inner_store, prefix=self._prefix, display=self.display,
                      create_via_copy=self.create_via_copy, opener=self._opener, limits=self.limits)
        other._deadline = deadline
        return other

    @property
    def _inner(self) -> Any:
        if self._deadline is None or self._opener is None or self.limits is None:
            return self._inner_store
        left = self._deadline.remaining()
        with self._lock:
            if self.limits.worst_case > left:
                shrunk = self.limits.within(left * 0.8)
                if shrunk != self.limits:  # at the floor (one 1 s attempt) nothing changes any more
                    self.limits = shrunk
                    self._inner_store = self._opener(shrunk)
            return self._inner_store

    def _path(self, key: str) -> str:
        key = key.strip("/")
        return f"{self._prefix}/{key}" if self._prefix else key

    def _key(self, path: str) -> str:
        if self._prefix and path.startswith(self._prefix + "/"):
            return path[len(self._prefix) + 1 :]
        return path

    # -- writes --------------------------------------------------------------------------------
    def put(self, key: str, data: bytes | memoryview | Iterable[bytes | bytearray | memoryview]) -> PutResult:
        """Write (or overwrite) an object; large payloads and iterables go multipart (not on
        WebDAV, which has no multipart upload)."""
        multipart = False if self.create_via_copy else None
        with _translate("put", key, self.display):
            res = obstore.put(self._inner, self._path(key), data, chunk_size=MULTIPART_CHUNK, max_concurrency=4,
                              use_multipart=multipart)
        return PutResult(res.get("e_tag"), res.get("version"))

    def put_if_absent(self, key: str, data: bytes) -> PutResult:
        """Create ``key`` only if it does not exist; raise :class:`ObjectExists` if it does.

        This is the one primitive the commit protocol depends on: exactly one of several
        concurrent callers succeeds.
        """
        if not self.create_via_copy:
            with _translate("create", key, self.display):
                res = obstore.put(self._inner, self._path(key), data, mode="create")
            return PutResult(res.get("e_tag"), res.get("version"))
        tmp = f"{key}{TMP_MARKER}{uuid.uuid4().hex}"
        self.put(tmp, data)
        try:
            with _translate("create", key, self.display):
                obstore.copy(self._inner, self._path(tmp), self._path(key), overwrite=False)
        finally:
            self.delete(tmp)
        # Some WebDAV servers (wsgidav among them) check-then-copy, so two racing COPYs can both
        # succeed; the later one's bytes stay.  Reading back narrows that to "the stored bytes are
        # ours"; docs/operations.md says WebDAV backups assume one writer per partition.
        if self.get(key) != data:
            raise ObjectExists(f"create: {self.display}/{key} was written by another writer", key=key)
        info = self.head(key)
        return PutResult(info.e_tag, info.version)

    def put_if_match(self, key: str, data: bytes, *, e_tag: str | None, version: str | None = None) -> PutResult:
        """Replace ``key`` only if it is still at ``e_tag``/``version`` (GCS compares the generation).

        Unsupported on local folders and WebDAV: nothing correctness-critical may rely on it.
        """
        mode: dict[str, str] = {}
        if e_tag is not None:
            mode["e_tag"] = e_tag
        if version is not None:
            mode["version"] = version
        if not mode:
            raise ValueError("put_if_match needs e_tag or version")
        with _translate("update", key, self.display):
            res = obstore.put(self._inner, self._path(key), data, mode=mode)  # type: ignore[arg-type]
        return PutResult(res.get("e_tag"), res.get("version"))

    def copy(self, src: str, dst: str, *, overwrite: bool = True) -> None:
        with _translate("copy", dst, self.display):
            obstore.copy(self._inner, self._path(src), self._path(dst), overwrite=overwrite)

    def delete(self, key: str, *, missing_ok: bool = True) -> None:
        """Delete ``key``; deleting a missing object is fine unless ``missing_ok`` is false."""
        if not missing_ok and not self.exists(key):  # S3 and memory stores delete missing keys silently
            raise ObjectNotFound(f"delete: {self.display}/{key} does not exist", key=key)
        try:
            with _translate("delete", key, self.display):
                obstore.delete(self._inner, self._path(key))
        except ObjectNotFound:
            if not missing_ok:
                raise
        except StorageError:
            # Azure and some HTTP servers answer 404 on a missing key with a generic error.
            if missing_ok and not self.exists(key):
                return
            raise

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        return bytes(self.get_buffer(key))

    def get_buffer(self, key: str) -> memoryview:
        """The object as a read-only view of the store's own buffer: no copy, so a large object
        (a segment) takes its size in memory once, not twice."""
        with _translate("get", key, self.display):
            return memoryview(obstore.get(self._inner, self._path(key)).bytes())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``key``."""
        if end <= start:
            return b""
        with _translate("get_range", key, self.display):
            return bytes(obstore.get_range(self._inner, self._path(key), start=start, end=end))

    def head(self, key: str) -> ObjectInfo:
        with _translate("head", key, self.display):
            meta = obstore.head(self._inner, self._path(key))
        return self._info(meta)

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (recursive), in no guaranteed order; with ``start_after``
        only keys that sort after it (S3 lists from there natively, so long histories stay cheap)."""
        path = self._path(prefix) if prefix else self._prefix
        offset = self._path(start_after) if start_after else None
        with _translate("list", prefix or None, self.display):
            for chunk in obstore.list(self._inner, path or None, offset=offset, chunk_size=1000):
                for meta in chunk:
                    yield self._info(meta)

    def list_dirs(self, prefix: str = "") -> tuple[builtins.list[str], builtins.list[ObjectInfo]]:
        """One level below ``prefix``: (child "directory" names, objects)."""
        path = self._path(prefix) if prefix else self._prefix
        with _translate("list", prefix or None, self.display):
            res = obstore.list_with_delimiter(self._inner, path or None)
        base = (path + "/") if path else ""
        dirs = sorted(p[len(base):].strip("/") if p.startswith(base) else p.strip("/")
                      for p in res["common_prefixes"])
        return dirs, [self._info(m) for m in res["objects"]]

    def _info(self, meta: Any) -> ObjectInfo:
        return ObjectInfo(self._key(meta["path"]), meta["size"], meta["last_modified"], meta.get("e_tag"),
                          meta.get("version"))


def open_store(target: str | StorageConfig, *, credential_provider: Any = None) -> Store:
    """Open a store from a URL or validated config; credentials default to the platform identity.

    ``credential_provider`` is one of obstore's providers (``obstore.auth.azure.AzureCredentialProvider``,
    ``obstore.auth.google.GoogleCredentialProvider``, ``obstore.auth.boto3.Boto3CredentialProvider``)
    built by a handler around its platform's identity library (the engine never imports a cloud
    SDK), or a mapping from backend name (``"s3"``, ``"azure"``, ``"gcs"``) to one, so that a
    provider is only ever handed to the backend it is for.  A run with a deadline bounds the
    store with :meth:`Store.bounded`.
    """
    cfg = storage_from_url(target) if isinstance(target, str) else target
    if isinstance(credential_provider, Mapping):  # {"gcs": provider}: only for that backend
        credential_provider = credential_provider.get(cfg.backend)
    if credential_provider is not None and cfg.backend in {"s3", "azure", "gcs"}:
        client_extra: dict[str, Any] = {"credential_provider": credential_provider}
    else:
        client_extra = {}
    base_client: dict[str, Any] = {}
    if cfg.allow_http:
        base_client["allow_http"] = True
    extra: dict[str, Any] = dict(cfg.options)
    display = cfg.display()
    limits = RetryLimits.of(cfg)

    if cfg.backend in {"filesystem", "memory"}:
        with _translate("open", None, display):
            if cfg.backend == "filesystem":
                assert cfg.path is not None
                root = Path(cfg.path).expanduser().resolve()
                root.mkdir(parents=True, exist_ok=True)
                return Store(LocalStore(str(root), mkdir=True), prefix=cfg.prefix, display=display)
            with _MEMORY_LOCK:
                mem = _MEMORY_STORES.setdefault(cfg.name, MemoryStore())
            return Store(mem, prefix=cfg.prefix, display=display)

    prefix = cfg.prefix
    create_via_copy = False
    if cfg.backend == "http":
        assert cfg.http_url is not None
        # The URL's path joins our prefix (rather than obstore's) so that missing parent
        # collections are created (MKCOL) all the way from the server root.
        parts = urlsplit(cfg.http_url)
        origin = f"{parts.scheme}://{parts.netloc}/"
        if cfg.username is not None:
            import base64

            token = base64.b64encode(f"{cfg.username}:{reveal(cfg.password) if cfg.password else ''}".encode())
            base_client["default_headers"] = {"Authorization": f"Basic {token.decode()}"}
        prefix = "/".join(p for p in (parts.path.strip("/"), cfg.prefix.strip("/")) if p)
        create_via_copy = True

    def opener(lim: RetryLimits) -> Any:
        client: Any = {**base_client, **lim.client_options()}  # obstore's ClientConfig
        retry: Any = lim.retry_config()  # obstore's RetryConfig
        with _translate("open", None, display):
            if cfg.backend == "s3":
                return _open_s3(cfg, client, extra, client_extra, retry)
            if cfg.backend == "azure":
                return _open_azure(cfg, client, extra, client_extra, retry)
            if cfg.backend == "gcs":
                gcs: dict[str, Any] = dict(extra)
                if cfg.base_url:
                    gcs["base_url"] = cfg.base_url
                if cfg.service_account_path:
                    gcs["service_account"] = cfg.service_account_path
                if cfg.skip_signature:
                    gcs["skip_signature"] = True
                return GCSStore(cfg.bucket, client_options=client, retry_config=retry, **client_extra, **gcs)
            return HTTPStore.from_url(origin, client_options=client, retry_config=retry)

    return Store(opener(limits), prefix=prefix, display=display, create_via_copy=create_via_copy, opener=opener,
                 limits=limits)


def _open_s3(cfg: StorageConfig, client: Any, extra: dict[str, Any], client_extra: dict[str, Any] | None = None,
             retry: Any = None) -> S3Store:
    s3: dict[str, Any] = dict(extra)
    if cfg.region:
        s3["region"] = cfg.region
    if cfg.access_key is not None and cfg.secret_key is not None:
        s3["access_key_id"] = reveal(cfg.access_key)
        s3["secret_access_key"] = reveal(cfg.secret_key)
        if cfg.session_token is not None:
            s3["session_token"] = reveal(cfg.session_token)
    # path_style: true -> https://endpoint/bucket/key (MinIO, Ceph, LocalStack).
    # Otherwise virtual-hosted https://bucket.endpoint/key, the AWS default; object_store then
    # wants the bucket already in a custom endpoint, so put it there.
    path_style = cfg.path_style if cfg.path_style is not None else False
    if cfg.endpoint:
        if path_style:
            s3["endpoint"] = cfg.endpoint
            s3["virtual_hosted_style_request"] = False
        else:
            scheme, _, rest = cfg.endpoint.partition("://")
            s3["endpoint"] = f"{scheme}://{cfg.bucket}.{rest}" if rest else cfg.endpoint
            s3["virtual_hosted_style_request"] = True
    else:
        s3["virtual_hosted_style_request"] = not path_style
    return S3Store(cfg.bucket, client_options=client, retry_config=retry, **(client_extra or {}), **s3)


def _open_azure(cfg: StorageConfig, client: Any, extra: dict[str, Any], client_extra: dict[str, Any] | None = None,
                retry: Any = None) -> AzureStore:
    az: dict[str, Any] = dict(extra)
    if cfg.use_emulator:
        az["use_emulator"] = True
    if cfg.account_name:
        az["account_name"] = cfg.account_name
    if cfg.account_key is not None:
        az["account_key"] = reveal(cfg.account_key)
    if cfg.sas_token is not None:
        az["sas_key"] = reveal(cfg.sas_token)
    if cfg.endpoint:
        az["endpoint"] = cfg.endpoint
    return AzureStore(cfg.container_name, client_options=client, retry_config=retry, **(client_extra or {}), **az)
