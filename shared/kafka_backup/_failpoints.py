"""Named crash points, so tests can kill -9 the process at each step of the commit protocol.

Set ``KAFKA_BACKUP_FAILPOINT=<name>`` (optionally ``<name>@<n>`` to crash on the n-th hit) and
the process sends itself SIGKILL there: no cleanup, no ``finally``, exactly like a lost Lambda.
Unset (always, in production) a hit is one dictionary lookup.

``KAFKA_BACKUP_DELAYPOINT=<name>:<seconds>[@<n>]`` makes the n-th hit of ``delay(name)`` sleep
instead: a phase that takes longer than expected (a slow broker, a throttled store), so tests can
put a deadline inside any phase of a run.
"""

from __future__ import annotations

import os
import signal
import time

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


def delay(name: str) -> None:
    spec = os.environ.get("KAFKA_BACKUP_DELAYPOINT")
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    seconds, _, nth = rest.partition("@")
    key = f"delay:{name}"
    _counts[key] = _counts.get(key, 0) + 1
    if _counts[key] == int(nth or 1):
        time.sleep(float(seconds))


def reset() -> None:
    """Forget how often each point was hit (tests that arm the same point more than once)."""
    _counts.clear()
