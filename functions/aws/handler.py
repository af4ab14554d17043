"""AWS Lambda entry point: one bounded, resumable backup run per scheduled invocation.

The event is the schedule's payload: EventBridge Scheduler delivers its ``Input`` as the event (e.g.
``{"job": "orders-shard-0", "backup": {"shard": {"index": 0, "count": 4}}}``); a classic scheduled
rule delivers its envelope (``"source": "aws.events"``), whose ``detail`` is the payload.  Settings
are the environment (``KAFKA_BACKUP_*``) overridden by the payload; everything about Kafka and
storage is the engine's (``kafka_backup``), this file only adapts Lambda to it:

* the deadline is Lambda's remaining time less ``KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS`` (default 30 s,
  never more than a third of the remaining time, so that short timeouts still leave time to work;
  ``kafka_backup.scheduled`` applies the rule, the same for every cloud);
* ``secretref:aws-secretsmanager:<arn-or-name>[#json-key]`` values are read through Powertools
  Parameters (cached for ``POWERTOOLS_PARAMETERS_MAX_AGE``, 300 s by default);
* storage and ``AWS_MSK_IAM`` use the execution role's credentials from the environment;
* the run's summary is one JSON log line (``"event": "backup_run"``) and its figures are EMF
  metrics (dimensions ``service`` = function name, ``shard`` = "i/N"), flushed before a failed run
  is raised as the invocation's error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from aws_lambda_powertools.utilities.typing import LambdaContext
from kafka_backup import ConfigError, register_secret_resolver, run_scheduled_backup

Handler = Callable[[Any, LambdaContext], Any]

logger = Logger(level=os.environ.get("KAFKA_BACKUP_LOG_LEVEL") or None)
# The engine's and kafka-python's loggers write through the same JSON handler, so their extra= fields
# (run_id, topic, partition) and the Lambda context become JSON fields.  Both load lazily: register now.
for _name in ("kafka_backup", "kafka"):
    logging.getLogger(_name)
copy_config_to_registered_loggers(source_logger=logger, include={"kafka_backup", "kafka"})
# Libraries stay at WARNING whatever the level: kafka-python logs every connection at INFO (the CLI
# quiets it too), and botocore logs whole responses at DEBUG, Secrets Manager's (the password) included.
for _name in ("kafka", "botocore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "KafkaBackup")


def secret(ref: str) -> str:
    """``<arn-or-name>[#json-key]``: a Secrets Manager secret's string, or one key of its JSON."""
    name, _, key = ref.partition("#")
    try:
        document = parameters.get_secret(name, transform="json" if key else None)
    except (GetParameterError, TransformParameterError) as exc:  # messages name the secret, never its value
        raise ConfigError(f"cannot read secret {name!r}: {exc}", source="aws-secretsmanager") from exc
    if not key:
        return str(document)
    if not isinstance(document, dict) or key not in document:
        raise ConfigError(f"secret {name!r} is not a JSON object with the key {key!r}", source="aws-secretsmanager")
    return str(document[key])


register_secret_resolver("aws-secretsmanager", secret)


def traced(handler: Handler) -> Handler:
    """X-Ray only when tracing is on: importing and patching aws_xray_sdk adds about a second to cold starts."""
    if resolve_truthy_env_var_choice(env=os.environ.get("POWERTOOLS_TRACE_DISABLED", "false")):
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler, capture_response=False)


def payload(event: Any) -> Any:
    """The schedule's payload: a scheduled rule's ``detail``, or the event itself (Scheduler ``Input``)."""
    if isinstance(event, dict) and event.get("source") == "aws.events" and "detail-type" in event:
        return event.get("detail") or {}
    return event


@logger.inject_lambda_context(log_event=False)
@traced
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    # The engine derives the deadline from Lambda's remaining time (less the margin) and turns a bad
    # payload or setting into a failed result, so every invocation logs one summary and its metrics.
    result = run_scheduled_backup(payload(event), budget_s=context.get_remaining_time_in_millis() / 1000)
    figures = result.metrics(service=context.function_name)
    for name, value in figures.dimensions.items():
        metrics.add_dimension(name=name, value=value)
    for metric in figures.figures:
        metrics.add_metric(name=metric.name, unit=metric.unit, value=metric.value)
    # Through the stdlib logger behind Powertools' (which has no log(level, ...)): same handler and fields.
    summary = result.summary(service=context.function_name)
    logging.getLogger(logger.name).log(result.log_level, result.summary_line(), extra=summary)
    result.raise_for_status()  # after the summary; log_metrics flushes the EMF line on the way out
    return summary
