"""kafka-backup: bounded, resumable backups of Kafka topics into object storage, and restore.

The public surface is small::

    from kafka_backup import Deadline, Settings, run_backup

    settings = Settings.from_env(event={"backup": {"shard": {"index": 0, "count": 4}}})
    result = run_backup(settings, deadline=Deadline.after(840), raise_on_error=False)
    log.info(result.summary_line(), extra=result.summary())
    result.raise_for_status()

Modules: ``config`` (settings), ``storage`` (obstore behind one URL), ``segment`` (format v1),
``catalog`` (layout and commit chain), ``backup``, ``restore``, ``report`` (ls/verify), ``cli``.
Heavy modules (kafka-python) load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    Settings,
    StorageConfig,
    load_settings,
    load_storage_config,
    register_secret_resolver,
    storage_from_url,
)
from .deadline import Deadline
from .errors import (
    BackupIntegrityError,
    ConfigError,
    CorruptSegmentError,
    ExitCode,
    KafkaAuthError,
    KafkaBackupError,
    KafkaClientError,
    ObjectExists,
    RestoreError,
    RunFailedError,
    StorageError,
    exit_code_for,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .backup import Metric, PartitionResult, RunMetrics, RunResult, run_backup
    from .restore import RestoreOptions, RestoreResult, run_restore
    from .scheduled import run_scheduled_backup
    from .storage import Store, open_store

_LAZY = {
    "run_backup": "backup", "RunResult": "backup", "PartitionResult": "backup", "Metric": "backup",
    "RunMetrics": "backup", "run_scheduled_backup": "scheduled",
    "run_restore": "restore", "RestoreOptions": "restore", "RestoreResult": "restore",
    "open_store": "storage", "Store": "storage",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'kafka_backup' has no attribute {name!r}")


__all__ = [
    "BackupIntegrityError",
    "ConfigError",
    "CorruptSegmentError",
    "Deadline",
    "ExitCode",
    "KafkaAuthError",
    "KafkaBackupError",
    "KafkaClientError",
    "Metric",
    "ObjectExists",
    "PartitionResult",
    "RestoreError",
    "RestoreOptions",
    "RestoreResult",
    "RunFailedError",
    "RunMetrics",
    "RunResult",
    "Settings",
    "StorageConfig",
    "StorageError",
    "Store",
    "__version__",
    "exit_code_for",
    "load_settings",
    "load_storage_config",
    "open_store",
    "register_secret_resolver",
    "run_backup",
    "run_restore",
    "run_scheduled_backup",
    "storage_from_url",
]
