"""Named crash points, so tests can kill -9 the process at each step of the commit protocol.

Set ``KAFKA_BACKUP_FAILPOINT=<name>`` (optionally ``<name>@<n>`` to crash on the n-th hit) and
the process sends itself SIGKILL there: no cleanup, no ``finally``, exactly like a lost Lambda.
Unset (always, in production) a hit is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def hit(name: str) -> None:
    spec = os.environ.get("KAFKA_BACKUP_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """True when ``name`` is the configured failpoint (to stage a partial write before the kill)."""
    return os.environ.get("KAFKA_BACKUP_FAILPOINT", "").partition("@")[0] == name
