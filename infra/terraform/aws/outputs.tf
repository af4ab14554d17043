################################################################################
# Storage
################################################################################

output "bucket_name" {
  description = "Name of the backup bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.this.arn
}

output "storage_url" {
  description = "Storage URL of the backups (what the function gets as KAFKA_BACKUP_STORAGE__URL); use it with `kafka-backup ls/verify/restore --storage`."
  value       = local.storage_url
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket (module-created or given)."
  value       = local.kms_key_arn
}

################################################################################
# Function
################################################################################

output "function_name" {
  description = "Name of the backup function (also the service dimension of its metrics)."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the backup function."
  value       = aws_lambda_function.this.arn
}

output "function_role_arn" {
  description = "ARN of the function's execution role (e.g. for a cluster's resource policy or a key policy)."
  value       = aws_iam_role.function.arn
}

output "function_role_name" {
  description = "Name of the function's execution role."
  value       = aws_iam_role.function.name
}

output "environment" {
  description = "Environment variables the function runs with (no secret values: the password is a reference)."
  value       = local.environment
}

################################################################################
# Schedules
################################################################################

output "schedule_group_name" {
  description = "Name of the EventBridge Scheduler schedule group."
  value       = aws_scheduler_schedule_group.this.name
}

output "schedule_names" {
  description = "Names of the schedules, index i being shard i."
  value       = aws_scheduler_schedule.shard[*].name
}

output "schedule_arns" {
  description = "ARNs of the schedules, index i being shard i."
  value       = aws_scheduler_schedule.shard[*].arn
}

output "scheduler_role_arn" {
  description = "ARN of the role EventBridge Scheduler assumes to invoke the function."
  value       = aws_iam_role.scheduler.arn
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue (undelivered and finally failed invocations, with their shard payload)."
  value       = aws_sqs_queue.dlq.arn
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

################################################################################
# Logs and alarms
################################################################################

output "log_group_name" {
  description = "Name of the function's CloudWatch log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "log_group_arn" {
  description = "ARN of the function's CloudWatch log group."
  value       = aws_cloudwatch_log_group.this.arn
}

output "alarm_arns" {
  description = "ARNs of the alarms by kind (errors, throttles, no_successful_run, dead_letters: one each; gaps, lag, rpo: one per shard). Empty when create_alarms is false."
  value = {
    errors            = aws_cloudwatch_metric_alarm.errors[*].arn
    throttles         = aws_cloudwatch_metric_alarm.throttles[*].arn
    no_successful_run = aws_cloudwatch_metric_alarm.no_successful_run[*].arn
    dead_letters      = aws_cloudwatch_metric_alarm.dead_letters[*].arn
    gaps              = aws_cloudwatch_metric_alarm.gaps[*].arn
    lag               = aws_cloudwatch_metric_alarm.lag[*].arn
    rpo               = aws_cloudwatch_metric_alarm.rpo[*].arn
  }
}
