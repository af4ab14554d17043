output "storage_url" {
  description = "Where the backup lives (use with kafka-backup ls/verify/restore --storage)."
  value       = module.kafka_backup.storage_url
}

output "function_service_account_email" {
  description = "The Kafka principal of the backup: grant it READ/DESCRIBE through the cluster's Kafka ACLs if ACLs are enforced."
  value       = module.kafka_backup.function_service_account_email
}

output "scheduler_job_names" {
  description = "One Cloud Scheduler job per shard."
  value       = module.kafka_backup.scheduler_job_names
}

output "alert_policy_ids" {
  description = "Alert policies by purpose."
  value       = module.kafka_backup.alert_policy_ids
}
