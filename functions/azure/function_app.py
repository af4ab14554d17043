"""Azure Functions entry point (Python v2 programming model): one bounded, resumable backup per timer tick.

The timer fires on the NCRONTAB schedule (six fields, seconds first) in the app setting
``KAFKA_BACKUP_SCHEDULE``, e.g. ``0 */15 * * * *``; ``use_monitor`` keeps the schedule's status in
the host's storage, so a tick missed while the app was down runs late, flagged ``past_due``
(logged, then run as usual).  The host runs one instance of a timer function at a time, and a tick
that falls while a run is still going is skipped, so runs never overlap.

A timer has no payload: everything comes from the app settings (``KAFKA_BACKUP_*``, see the function
contract), including the shard (``KAFKA_BACKUP_BACKUP__SHARD__INDEX`` / ``__COUNT``: one app per
shard).  This file only adapts the Functions host to the engine (``kafka_backup``):

* **Deadline.**  The host cancels an invocation after ``functionTimeout`` (``host.json``, or the app
  setting ``AzureFunctionsJobHost__functionTimeout`` that overrides it) and does not tell the
  function how long it has.  ``KAFKA_BACKUP_TIMEOUT_SECONDS`` says it (default: the host's value;
  a larger value is capped to it), and the run hands back control
  ``KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS`` (default 30, never more than a third of the timeout)
  before it, counted from the start of the invocation.  What is not done is resumed next time.
* **Identity.**  Blob Storage, an Event Hubs / Entra ID Kafka endpoint and Key Vault secret
  references all use the app's managed identity through azure-identity (``entra_id.py``); no
  account key or connection string is needed anywhere.
* **Logs.**  The Python worker forwards a record's text, level and logger name to the host and
  drops ``extra=`` fields, so Application Insights would lose them.  Every ``kafka_backup`` record
  (the engine's and this file's) is therefore sent as one JSON object (``message``, ``level``,
  ``logger`` and the fields), which KQL reads with ``parse_json(message)``; the fields also stay on
  the record, so an OpenTelemetry log exporter (``PYTHON_ENABLE_OPENTELEMETRY``) turns them into
  ``customDimensions``.  The run's summary (``"event": "backup_run"``) carries every figure of the
  contract; the Terraform module's alerts query it.
* **Failure.**  A run in which a partition or the whole run failed is logged, then raised, so the
  invocation is marked failed (Application Insights ``requests.success == false`` and an exception).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import azure.functions as func
from entra_id import KeyVaultSecretResolver, storage_credential_provider
from kafka_backup import ConfigError, RunResult, register_secret_resolver, run_scheduled_backup
from kafka_backup.scheduled import seconds_from_env

FUNCTION_NAME = "kafka_backup"
HOST_JSON = Path(__file__).with_name("host.json")
#: App setting that overrides host.json's functionTimeout (host.json settings can be set this way).
HOST_TIMEOUT_SETTING = "AzureFunctionsJobHost__functionTimeout"
#: A .NET TimeSpan as host.json writes it: [d.]hh:mm:ss[.fff]
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d+))?")
#: Loggers whose INFO lines are noise in a function's logs (one per connection or HTTP request).
_CHATTY_LOGGERS = ("kafka", "azure.core.pipeline.policies.http_logging_policy")

app = func.FunctionApp()
log = logging.getLogger("kafka_backup.azure")


@app.function_name(name=FUNCTION_NAME)
@app.timer_trigger(arg_name="timer", schedule="%KAFKA_BACKUP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def kafka_backup(timer: func.TimerRequest) -> None:
    started = time.monotonic()  # first: the host's timeout is already running
    if timer.past_due:
        status = getattr(timer, "schedule_status", None) or {}  # not on the TimerRequest ABC
        log.warning("timer is past due (last run %s, due %s): running now", status.get("Last", "-"),
                    status.get("Next", "-"), extra={"past_due": True, "schedule_last": status.get("Last"),
                                                    "schedule_next": status.get("Next")})
    backup(started)


def backup(started: float) -> dict[str, Any]:
    """Run one backup that ends before the host's timeout; log its summary, raise if it failed."""
    try:
        budget = run_timeout_seconds()
        provider = {"azure": storage_credential_provider()}
    except Exception as exc:  # the timeout setting or the identity: the run cannot start
        result = RunResult.not_started(exc)
    else:
        result = run_scheduled_backup(None, budget_s=budget, started=started, credential_provider=provider)
    summary = result.summary(service=os.environ.get("WEBSITE_SITE_NAME") or FUNCTION_NAME)
    log.log(result.log_level, "%s", result.summary_line(), extra=summary)
    result.raise_for_status()  # after the summary: the invocation fails, the host records the exception
    return summary


# -- the deadline ---------------------------------------------------------------------------------------
def run_timeout_seconds() -> float:
    """``KAFKA_BACKUP_TIMEOUT_SECONDS``, defaulting to (and capped by) the host's functionTimeout."""
    host = host_timeout_seconds()
    value = seconds_from_env(os.environ, "KAFKA_BACKUP_TIMEOUT_SECONDS", host)
    if value is None:
        raise ConfigError("the host's functionTimeout is unbounded (-1) or unset: set KAFKA_BACKUP_TIMEOUT_SECONDS "
                          "to how long a run may take", source="environment", field="KAFKA_BACKUP_TIMEOUT_SECONDS")
    if host is not None and value > host:
        log.warning("KAFKA_BACKUP_TIMEOUT_SECONDS=%s exceeds the host's functionTimeout (%.0fs); using the latter",
                    value, host)
        return host
    return value


def host_timeout_seconds() -> float | None:
    """The host's functionTimeout in seconds; None when unbounded (``-1``) or not configured."""
    raw = os.environ.get(HOST_TIMEOUT_SETTING)
    source = f"app setting {HOST_TIMEOUT_SETTING}"
    if raw is None or not raw.strip():
        raw, source = _host_json().get("functionTimeout"), str(HOST_JSON)
    if raw is None:
        return None
    text = str(raw).strip()
    if text == "-1":
        return None
    match = _TIMESPAN.fullmatch(text)
    if match is None:
        raise ConfigError(f"functionTimeout must be a TimeSpan like 00:10:00 or -1, got {text!r}", source=source,
                          field="functionTimeout")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@functools.cache
def _host_json() -> dict[str, Any]:
    try:
        doc = json.loads(HOST_JSON.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read host.json ({type(exc).__name__}: {exc})", source=str(HOST_JSON)) from exc
    if not isinstance(doc, dict):
        raise ConfigError("host.json is not a JSON object", source=str(HOST_JSON))
    return doc


# -- logs ------------------------------------------------------------------------------------------------
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class StructuredForwarder(logging.Handler):
    """Passes each ``kafka_backup`` record to the root logger's handlers (the worker's) as one JSON text.

    The JSON holds the message, level, logger and every ``extra=`` field (a traceback goes into
    ``exception``, so the text stays one JSON object).  The original fields are kept on the
    forwarded record for handlers that read them (OpenTelemetry's maps them to customDimensions).
    """

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            doc: dict[str, Any] = {"message": record.getMessage(), "level": record.levelname, "logger": record.name}
            doc.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
            if record.exc_info:
                doc["exception"] = self._formatter.formatException(record.exc_info)
            forwarded = logging.makeLogRecord({**vars(record), "msg": json.dumps(doc, default=str), "args": None,
                                               "exc_info": None, "exc_text": None})
            logging.getLogger().handle(forwarded)
        except Exception:
            self.handleError(record)


def configure_logging() -> None:
    """Route the engine's loggers through :class:`StructuredForwarder`; quiet the chatty libraries.

    ``KAFKA_BACKUP_LOG_LEVEL`` (default INFO) sets the engine's level; at DEBUG kafka-python's and
    azure-core's per-request lines are let through too.
    """
    raw = os.environ.get("KAFKA_BACKUP_LOG_LEVEL", "").strip().upper() or "INFO"
    level = logging.getLevelName(raw)
    engine = logging.getLogger("kafka_backup")
    engine.setLevel(level if isinstance(level, int) else logging.INFO)
    engine.propagate = False
    if not any(isinstance(h, StructuredForwarder) for h in engine.handlers):
        engine.addHandler(StructuredForwarder())
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == logging.DEBUG else logging.WARNING)
    if not isinstance(level, int):
        log.warning("KAFKA_BACKUP_LOG_LEVEL=%r is not a log level; using INFO", raw)


configure_logging()
register_secret_resolver("azure-keyvault", KeyVaultSecretResolver())
