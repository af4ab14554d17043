################################################################################
# Alarms
################################################################################

locals {
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  # The function emits its run metrics with the dimensions service (the function name) and
  # shard ("I/N"), so each custom-metric alarm watches one shard.
  alarm_shards = var.create_alarms ? var.shards : 0
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-errors"
  alarm_description = "kafka-backup ${var.name}: a run failed (a partition or the whole run); see the run's backup_run log line."
  namespace         = "AWS/Lambda"
  metric_name       = "Errors"
  dimensions        = { FunctionName = aws_lambda_function.this.function_name }

  statistic           = "Sum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "throttles" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-throttles"
  alarm_description = "kafka-backup ${var.name}: invocations were throttled (account or reserved concurrency too low for the shards)."
  namespace         = "AWS/Lambda"
  metric_name       = "Throttles"
  dimensions        = { FunctionName = aws_lambda_function.this.function_name }

  statistic           = "Sum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

# Fires when no invocation succeeded within the window, including when nothing ran at all
# (schedules disabled or deleted, role broken): successes = Invocations - Errors.
resource "aws_cloudwatch_metric_alarm" "no_successful_run" {
  count = var.create_alarms ? 1 : 0

  alarm_name          = "${var.name}-no-successful-run"
  alarm_description   = "kafka-backup ${var.name}: no successful run in the last ${var.no_success_alarm_period_seconds} seconds."
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"

  metric_query {
    id          = "successes"
    expression  = "FILL(invocations, 0) - FILL(errors, 0)"
    label       = "Successful invocations"
    return_data = true
  }

  metric_query {
    id = "invocations"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = aws_lambda_function.this.function_name }
      stat        = "Sum"
      period      = var.no_success_alarm_period_seconds
    }
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.this.function_name }
      stat        = "Sum"
      period      = var.no_success_alarm_period_seconds
    }
  }

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "gaps" {
  count = local.alarm_shards

  alarm_name        = "${var.name}-shard-${count.index}-gaps"
  alarm_description = "kafka-backup ${var.name} shard ${count.index}/${var.shards}: offsets were deleted by retention before they were backed up (recorded as gaps). Run more often, raise shards, or lengthen the topic's retention."
  namespace         = var.metrics_namespace
  metric_name       = "GapOffsets"
  dimensions = {
    service = aws_lambda_function.this.function_name
    shard   = "${count.index}/${var.shards}"
  }

  statistic           = "Sum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lag" {
  count = local.alarm_shards

  alarm_name        = "${var.name}-shard-${count.index}-lag"
  alarm_description = "kafka-backup ${var.name} shard ${count.index}/${var.shards}: more than ${var.lag_alarm_threshold_records} records not yet backed up after each run. Raise shards, memory or the schedule frequency."
  namespace         = var.metrics_namespace
  metric_name       = "LagRecords"
  dimensions = {
    service = aws_lambda_function.this.function_name
    shard   = "${count.index}/${var.shards}"
  }

  statistic           = "Maximum"
  period              = var.alarm_period_seconds
  evaluation_periods  = var.lag_alarm_evaluation_periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.lag_alarm_threshold_records
  treat_missing_data  = "ignore"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

# The write policy writes a partition at the latest when its oldest unbacked record is
# max_lag_seconds old, so a run reporting twice that has not kept the promised RPO.
resource "aws_cloudwatch_metric_alarm" "rpo" {
  count = local.alarm_shards

  alarm_name        = "${var.name}-shard-${count.index}-rpo"
  alarm_description = "kafka-backup ${var.name} shard ${count.index}/${var.shards}: the oldest record not yet backed up is more than ${2 * var.max_lag_seconds} seconds old (twice max_lag_seconds, the write policy's RPO). Runs fail, stop early or come too rarely: check the errors alarm, then raise shards, timeout or the schedule frequency."
  namespace         = var.metrics_namespace
  metric_name       = "RpoSeconds"
  dimensions = {
    service = aws_lambda_function.this.function_name
    shard   = "${count.index}/${var.shards}"
  }

  statistic           = "Maximum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 2 * var.max_lag_seconds
  treat_missing_data  = "ignore"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-dead-letters"
  alarm_description = "kafka-backup ${var.name}: an invocation could not be delivered or failed all its retries; its shard payload is in the dead-letter queue."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateNumberOfMessagesVisible"
  dimensions        = { QueueName = aws_sqs_queue.dlq.name }

  statistic           = "Maximum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}
