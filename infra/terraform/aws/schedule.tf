################################################################################
# Schedules: one EventBridge Scheduler schedule per shard
################################################################################

resource "aws_scheduler_schedule_group" "this" {
  name = var.name

  tags = local.tags
}

resource "aws_scheduler_schedule" "shard" {
  #checkov:skip=CKV_AWS_297:A schedule's input is only a job label and a shard index, nothing confidential; an AWS owned key encrypts it, and a customer managed key would need a key grant for the scheduler.
  # Schedule i of N sends {"job": ..., "backup": {"shard": {"index": i, "count": N}}}: the function
  # backs up shard i's stable share of the partitions. All shards fire together; the platform
  # runs them in parallel, and nothing else coordinates them.
  count = var.shards

  name        = "${var.name}-shard-${count.index}"
  group_name  = aws_scheduler_schedule_group.this.name
  description = "kafka-backup ${var.name}: shard ${count.index} of ${var.shards}"
  state       = var.schedule_enabled ? "ENABLED" : "DISABLED"

  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_expression_timezone

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.this.arn
    role_arn = aws_iam_role.scheduler.arn

    input = jsonencode({
      job = "${var.name}-shard-${count.index}"
      backup = {
        shard = {
          index = count.index
          count = var.shards
        }
      }
    })

    retry_policy {
      maximum_retry_attempts       = var.schedule_maximum_retry_attempts
      maximum_event_age_in_seconds = var.schedule_maximum_event_age_in_seconds
    }

    dead_letter_config {
      arn = aws_sqs_queue.dlq.arn
    }
  }
}

################################################################################
# Dead-letter queue: undelivered schedule invocations and failed asynchronous runs
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = var.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true

  tags = local.tags
}

data "aws_iam_policy_document" "dlq_queue" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq_queue.json
}

################################################################################
# Scheduler role: invoke this function only, dead-letter to this queue only
################################################################################

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    # Confused-deputy guard: only schedules of this account's schedule group may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_scheduler_schedule_group.this.arn]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name}-scheduler"
  description          = "kafka-backup ${var.name}: lets EventBridge Scheduler invoke the backup function"
  assume_role_policy   = data.aws_iam_policy_document.scheduler_assume.json
  max_session_duration = 3600

  tags = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeBackupFunction"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this.arn]
  }

  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-backup-function"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
