"""kafka-backup: bounded, resumable backups of Kafka topics into object storage, and restore.

The public surface is small::

    from kafka_backup import load_settings, run_backup, run_restore, RestoreOptions

    result = run_backup(load_settings("backup.yaml"), deadline_s=600)
    assert result.ok, result.errors

Modules: ``config`` (settings), ``storage`` (obstore behind one URL), ``segment`` (format v1),
``catalog`` (layout and commit chain), ``backup``, ``restore``, ``report`` (ls/verify), ``cli``.
Heavy modules (kafka-python) load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings, StorageConfig, load_settings, load_storage_config, storage_from_url
from .errors import (
    BackupIntegrityError,
    ConfigError,
    CorruptSegmentError,
    KafkaBackupError,
    KafkaClientError,
    ObjectExists,
    RestoreError,
    StorageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .backup import PartitionResult, RunResult, run_backup
    from .restore import RestoreOptions, RestoreResult, run_restore
    from .storage import Store, open_store

_LAZY = {
    "run_backup": "backup", "RunResult": "backup", "PartitionResult": "backup",
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
    "KafkaBackupError",
    "KafkaClientError",
    "ObjectExists",
    "PartitionResult",
    "RestoreError",
    "RestoreOptions",
    "RestoreResult",
    "RunResult",
    "Settings",
    "StorageConfig",
    "StorageError",
    "Store",
    "__version__",
    "load_settings",
    "load_storage_config",
    "open_store",
    "run_backup",
    "run_restore",
    "storage_from_url",
]
