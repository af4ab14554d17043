output "orders_storage_url" {
  description = "Where the MSK cluster's backups are."
  value       = module.orders.storage_url
}

output "orders_schedule_names" {
  description = "One schedule per shard of the MSK backup."
  value       = module.orders.schedule_names
}

output "orders_function_role_arn" {
  description = "Execution role of the MSK backup function."
  value       = module.orders.function_role_arn
}

output "legacy_storage_url" {
  description = "Where the legacy cluster's backups are."
  value       = module.legacy.storage_url
}

output "legacy_secret_arn" {
  description = "Secret to fill with the legacy cluster's SCRAM credentials after apply."
  value       = aws_secretsmanager_secret.legacy_scram.arn
}

output "alarm_topic_arn" {
  description = "SNS topic that every alarm of both backups notifies; subscribe to it."
  value       = aws_sns_topic.alarms.arn
}
