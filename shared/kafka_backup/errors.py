"""The one exception hierarchy of kafka-backup.

Callers catch these, never a library's own exceptions: obstore errors are translated in
:mod:`kafka_backup.storage`, kafka-python errors in :mod:`kafka_backup._kafka_raw` and
:mod:`kafka_backup.kafka`, pydantic/YAML errors in :mod:`kafka_backup.config`, always ``from exc``.

::

    KafkaBackupError
    ├── ConfigError                 bad settings; names the file and the field path
    ├── StorageError                the object store failed (names the object key)
    │   ├── ObjectNotFound          the key does not exist
    │   ├── ObjectExists            a create-only write lost: the key already exists
    │   ├── PreconditionFailed      an update-if-match lost: the object changed
    │   └── StorageUnsupported      the backend cannot do this operation
    ├── CorruptSegmentError         a segment or commit record fails its checksum or format
    ├── KafkaClientError            the cluster refused or could not be reached
    │   └── IncompatibleKafkaError  kafka-python internals or broker protocol versions changed
    ├── BackupIntegrityError        the committed chain is inconsistent (overlap, missing segment)
    └── RestoreError                a restore cannot proceed (target too small, group active, ...)

Messages never contain secrets: credentials are never part of a key, URL or field value we echo.
"""

from __future__ import annotations


class KafkaBackupError(Exception):
    """Root of every error raised by kafka-backup."""


class ConfigError(KafkaBackupError):
    """Settings are invalid. ``source`` is the file (or "flags"/"environment"), ``field`` the path."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ": ".join(p for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class StorageError(KafkaBackupError):
    """An object-store operation failed. ``key`` is the object key, relative to the store."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class ObjectNotFound(StorageError):
    """The object does not exist."""


class ObjectExists(StorageError):
    """A create-only write found the object already there (another run won the race)."""


class PreconditionFailed(StorageError):
    """An update-if-match found a different version of the object."""


class StorageUnsupported(StorageError):
    """The backend does not support this operation (e.g. update-if-match on a local folder)."""


class CorruptSegmentError(KafkaBackupError):
    """A stored object is truncated or fails its checksum or format; ``key`` names it."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class KafkaClientError(KafkaBackupError):
    """The Kafka cluster refused a request or could not be reached in time."""

    def __init__(self, message: str, *, topic: str | None = None, partition: int | None = None) -> None:
        self.topic = topic
        self.partition = partition
        where = f"{topic}[{partition}]" if topic is not None and partition is not None else topic
        super().__init__(f"{where}: {message}" if where else message)


class IncompatibleKafkaError(KafkaClientError):
    """kafka-python's internals or the broker's protocol versions are not what we were built for."""


class BackupIntegrityError(KafkaBackupError):
    """The committed chain of a partition is inconsistent; ``key`` names the first bad object."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class RestoreError(KafkaBackupError):
    """A restore cannot proceed; nothing was written when this is raised before producing."""
