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
    │   ├── StorageAuthError        the identity is not authenticated or not allowed (a role, a key)
    │   └── StorageUnsupported      the backend cannot do this operation
    ├── CorruptSegmentError         a segment or commit record fails its checksum or format
    ├── KafkaClientError            the cluster refused or could not be reached
    │   ├── KafkaAuthError          authentication or TLS trust failed (credentials, CA, hostname)
    │   └── IncompatibleKafkaError  kafka-python internals or broker protocol versions changed
    ├── BackupIntegrityError        the committed chain is inconsistent (overlap, missing segment)
    ├── RestoreError                a restore cannot proceed (target too small, group active, ...)
    └── RunFailedError              a backup run failed, whole or in part (``RunResult.raise_for_status``)

Messages never contain secrets: credentials are never part of a key, URL or field value we echo.

Exit codes are part of the public contract (the CLI returns them, handlers log them, alarms and
scripts branch on them): :class:`ExitCode` and :func:`exit_code_for` are the one mapping.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a run's outcome means to a scheduler, a script or an alarm."""

    OK = 0  #: success; a run stopped by its budget or deadline is a success (the next run resumes)
    FAILED = 1  #: a partition failed, ``verify`` found a problem, or a restore failed
    CONFIG = 2  #: usage, configuration, credentials or TLS trust: a human must change a setting
    GAPS = 3  #: success, but offsets were lost to retention before they were backed up (recorded)
    UNREACHABLE = 4  #: Kafka or storage could not be reached or refused the request


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of a run that ended with ``exc`` (anything not ours is a plain failure)."""
    if isinstance(exc, ConfigError | KafkaAuthError | StorageAuthError):
        return ExitCode.CONFIG
    if isinstance(exc, KafkaClientError | StorageError) and not isinstance(exc, IncompatibleKafkaError):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED


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


class StorageAuthError(StorageError):
    """The store refused the identity (401/403): a missing role or a wrong key, not an outage."""


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


class KafkaAuthError(KafkaClientError):
    """SASL authentication, authorization or TLS certificate verification failed.

    A configuration problem (wrong password, missing CA, wrong host name, missing ACL), not an
    outage: retrying does not help, so it maps to :attr:`ExitCode.CONFIG`.
    """


class IncompatibleKafkaError(KafkaClientError):
    """kafka-python's internals or the broker's protocol versions are not what we were built for."""


class BackupIntegrityError(KafkaBackupError):
    """The committed chain of a partition is inconsistent; ``key`` names the first bad object."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class RestoreError(KafkaBackupError):
    """A restore cannot proceed; nothing was written when this is raised before producing."""


class RunFailedError(KafkaBackupError):
    """A backup run failed as a whole or for some partitions; committed work stays committed.

    ``exit_code`` is what the CLI would exit with for the same run.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)
