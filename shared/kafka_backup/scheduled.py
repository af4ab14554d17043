"""One scheduled run, the way every cloud function needs it: the handler's whole job in one call.

Why here and not in each handler: the three functions (Lambda, Azure Functions, Cloud Run
functions) must agree on how a trigger's payload narrows the job, how the deadline is derived from
the platform's clock, how a bad payload or setting is reported, and what the one summary line of
a tick says.  Written once, tested once; a handler only adapts its trigger and its telemetry.

Example (AWS Lambda)::

    result = run_scheduled_backup(event, budget_s=context.get_remaining_time_in_millis() / 1000)
    logger.log(result.log_level, result.summary_line(), extra=result.summary(service=name))
    result.raise_for_status()
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from .backup import RunResult, run_backup
from .config import Settings
from .deadline import Deadline
from .errors import ConfigError

__all__ = ["DEFAULT_DEADLINE_MARGIN_SECONDS", "deadline_from_budget", "parse_payload", "run_scheduled_backup",
           "seconds_from_env"]

#: Seconds kept between the run's deadline and the platform's own cut-off (Lambda's timeout, the
#: function timeout on Azure and GCP): room to flush logs and metrics and return.  Never more than
#: a third of the budget, so short test timeouts still leave the run most of its time.
DEFAULT_DEADLINE_MARGIN_SECONDS = 30.0
MARGIN_VARIABLE = "KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS"
BUDGET_VARIABLE = "KAFKA_BACKUP_TIMEOUT_SECONDS"


def parse_payload(payload: Any) -> dict[str, Any]:
    """A trigger's payload as a settings mapping: a dict, or JSON text/bytes of one; empty is ``{}``."""
    if payload is None or payload == b"" or payload == "":
        return {}
    if isinstance(payload, bytes | bytearray | str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise ConfigError(f"the payload is not JSON: {exc}", source="event") from exc
    if not isinstance(payload, Mapping):
        raise ConfigError(f"the payload must be a JSON object, got {type(payload).__name__}", source="event")
    return dict(payload)


def seconds_from_env(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    """A positive number of seconds from ``env[name]`` (``default`` when unset); a ConfigError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}", source="environment",
                          field=name)
    return value


def deadline_from_budget(budget_s: float, *, started: float | None = None,
                         environ: Mapping[str, str] | None = None) -> Deadline:
    """``started + budget - margin``; the margin is ``KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS`` (default
    30 s), capped at a third of the budget."""
    env = os.environ if environ is None else environ
    margin = seconds_from_env(env, MARGIN_VARIABLE, DEFAULT_DEADLINE_MARGIN_SECONDS) or 0.0
    start = time.monotonic() if started is None else started
    return Deadline(start + budget_s - min(margin, budget_s / 3))


def run_scheduled_backup(payload: Any = None, *, budget_s: float | None = None, default_budget_s: float | None = None,
                         started: float | None = None, environ: Mapping[str, str] | None = None,
                         credential_provider: Any = None) -> RunResult:
    """Run one backup for a schedule tick and return its :class:`~kafka_backup.backup.RunResult`, never raise.

    - ``payload``: the trigger's payload (a mapping, or JSON text/bytes), which may name or narrow
      the job (``{"job": ..., "backup": {"shard": {"index": 0, "count": 4}}}``) over the
      environment's settings (``Settings.from_env``).
    - ``budget_s``: the seconds the platform gives this invocation from ``started`` (a monotonic
      instant, default now): Lambda's remaining time.  Without it, ``KAFKA_BACKUP_TIMEOUT_SECONDS``
      (the configured function timeout on Azure and GCP), else ``default_budget_s``, else none.
      The run's deadline is that budget less the margin (:func:`deadline_from_budget`).
    - A payload, setting or identity problem becomes a result with ``ok=False`` (exit code 2 for
      settings), so the tick still logs its one summary line and publishes ``RunFailed``; the
      handler then calls ``result.raise_for_status()``.
    """
    env = os.environ if environ is None else environ
    start = time.monotonic() if started is None else started
    settings: Settings | None = None
    deadline: Deadline | None = None
    try:
        budget = budget_s if budget_s is not None else seconds_from_env(env, BUDGET_VARIABLE, default_budget_s)
        if budget is not None:
            deadline = deadline_from_budget(budget, started=start, environ=env)
        settings = Settings.from_env(environ=env, event=parse_payload(payload))
        return run_backup(settings, deadline=deadline, raise_on_error=False, credential_provider=credential_provider)
    except Exception as exc:
        return RunResult.not_started(exc, settings=settings, deadline=deadline)
