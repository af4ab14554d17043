"""An absolute point in time by which a run must have returned.

Why absolute: a serverless platform kills the process at a fixed instant (Lambda's remaining time,
the configured timeout on Azure and GCP).  Seconds measured from "now" drift with every phase that
runs before the engine gets the number (imports, settings, secret look-ups), so handlers pass the
instant itself and every phase of a run (connect, snapshots, planning, fetches, commits, sweeps)
asks the same clock how much is left.  The clock is ``time.monotonic()``: wall-clock jumps (NTP)
never stretch or shrink a run.

Example::

    deadline = Deadline.after(context.get_remaining_time_in_millis() / 1000 - 30)
    run_backup(settings, deadline=deadline)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["Deadline", "DeadlineLike", "as_deadline"]


class Deadline:
    """A monotonic instant.  Immutable; cheap to copy and to query from any thread."""

    __slots__ = ("_at",)

    def __init__(self, monotonic_at: float) -> None:
        self._at = float(monotonic_at)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """``seconds`` from now (negative or zero: already expired)."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def at(cls, when: datetime) -> Deadline:
        """An aware wall-clock time, converted once to the monotonic clock.

        A naive datetime is refused: guessing its zone would move the deadline by hours.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("a deadline datetime must be timezone-aware (e.g. datetime.now(UTC) + ...)")
        return cls(time.monotonic() + (when - datetime.now(UTC)).total_seconds())

    @property
    def monotonic(self) -> float:
        """The instant on ``time.monotonic()``'s clock."""
        return self._at

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._at - time.monotonic())

    def expired(self, reserve: float = 0.0) -> bool:
        """True once fewer than ``reserve`` seconds are left."""
        return time.monotonic() >= self._at - reserve

    def bound(self, seconds: float, *, floor: float = 0.0) -> float:
        """``seconds`` capped by the time left (but at least ``floor``): for timeouts of one call."""
        return max(floor, min(seconds, self.remaining()))

    def earliest(self, other: Deadline | None) -> Deadline:
        return self if other is None or self._at <= other._at else other

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"


DeadlineLike = Deadline | datetime


def as_deadline(deadline: DeadlineLike | None = None, seconds: float | None = None) -> Deadline | None:
    """The earlier of an absolute ``deadline`` (a :class:`Deadline` or an aware datetime) and
    ``seconds`` from now.

    A bare number is refused as ``deadline``: ``time.monotonic() + 600`` and ``600`` are both
    floats, and mistaking one for the other would make a run either endless or instantly over.
    """
    if deadline is not None and not isinstance(deadline, Deadline | datetime):
        raise TypeError(f"deadline must be a Deadline or an aware datetime, not {type(deadline).__name__} "
                        "(use Deadline(monotonic_instant) or deadline_s=seconds)")
    absolute = Deadline.at(deadline) if isinstance(deadline, datetime) else deadline
    relative = Deadline.after(float(seconds)) if seconds is not None else None
    if absolute is None:
        return relative
    return absolute.earliest(relative)
