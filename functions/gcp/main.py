"""Kafka backup as a Cloud Run function (functions-framework): one bounded run per schedule tick.

Two entry points over the same run:

* ``backup_http``: Cloud Scheduler calls it with an OIDC token, which Cloud Run's IAM check
  verifies before the request gets here (so this code does not).  The JSON body is the schedule's
  payload, e.g. ``{"job": "orders-0", "backup": {"shard": {"index": 0, "count": 4}}}``.  Answers
  200 with the run summary, or 500 with it when the run failed, so Scheduler retries and alerts.
  HTTP functions may run 60 minutes (Scheduler waits at most 30).
* ``backup_pubsub``: a Pub/Sub CloudEvent whose ``message.data`` is that payload, base64-encoded.
  Event functions are cut off after 9 minutes; a failed run raises, so Pub/Sub redelivers.

Settings come from ``KAFKA_BACKUP_*`` (see the function contract) overlaid with the payload.  The
run must hand back control before the platform kills it, and neither trigger says when that is:
``KAFKA_BACKUP_TIMEOUT_SECONDS`` is the configured timeout (default 3600 for HTTP, 540 for events),
and the run ends ``KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS`` (default 30, at most a third of it)
before it, counted from the request's arrival.  Logs are one JSON object per line on stdout, which
Cloud Logging turns into ``jsonPayload`` with ``severity``; the run's summary line carries every
figure, and Cloud Monitoring's log-based metrics (Terraform) read them from there.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import sys
import time
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from gcp_identity import SecretManagerResolver, StorageCredentials
from kafka_backup import RunFailedError, register_secret_resolver, run_scheduled_backup

SERVICE = os.environ.get("K_SERVICE", "kafka-backup")
HTTP_TIMEOUT_SECONDS = 3600.0
EVENT_TIMEOUT_SECONDS = 540.0
log = logging.getLogger("kafka_backup.gcp")
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record: Cloud Logging's ``severity``/``message``/``time`` plus every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name,
                               "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat()}
        doc.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            doc["stack_trace"] = self.formatException(record.exc_info)  # Error Reporting reads this field
        return json.dumps(doc, default=str)


_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(CloudLoggingFormatter())
logging.getLogger().handlers[:] = [_handler]
logging.getLogger().setLevel(os.environ.get("KAFKA_BACKUP_LOG_LEVEL", "INFO").upper())
logging.getLogger("kafka").setLevel(logging.WARNING)  # as the CLI: kafka-python's INFO is per-connection chatter
register_secret_resolver("gcp-secretmanager", SecretManagerResolver())
_storage_credentials = StorageCredentials()  # per instance: ADC found once, a token per run's store


@functions_framework.http
def backup_http(request: flask.Request) -> tuple[flask.Response, int]:
    summary = _run(request.get_data(), time.monotonic(), HTTP_TIMEOUT_SECONDS)
    return flask.jsonify(summary), 200 if summary["ok"] else 500


@functions_framework.cloud_event
def backup_pubsub(event: CloudEvent) -> None:
    arrived = time.monotonic()
    message = event.data.get("message", {}) if isinstance(event.data, dict) else {}
    summary = _run(base64.b64decode(message.get("data") or b""), arrived, EVENT_TIMEOUT_SECONDS)
    if not summary["ok"]:  # Pub/Sub redelivers a failed event
        raise RunFailedError(f"backup run {summary['run_id']} failed: "
                             f"{summary.get('error') or summary.get('failed_partitions')}",
                             exit_code=summary["exit_code"])


def _run(payload: bytes, arrived: float, default_timeout: float) -> dict[str, Any]:
    """One run (deadline: KAFKA_BACKUP_TIMEOUT_SECONDS, or the trigger's maximum, from arrival) and
    its one summary line; failures are in the summary (``ok``), never raised."""
    result = run_scheduled_backup(payload, default_budget_s=default_timeout, started=arrived,
                                  credential_provider={"gcs": _storage_credentials})
    summary = result.summary(service=SERVICE)
    log.log(result.log_level, result.summary_line(), extra=summary)
    return summary
