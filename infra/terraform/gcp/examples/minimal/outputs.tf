output "storage_url" {
  description = "Where the backup lives (use with kafka-backup ls/verify/restore --storage)."
  value       = module.kafka_backup.storage_url
}

output "kafka_password_secret" {
  description = "Secret to add the SASL password to."
  value       = module.kafka_backup.kafka_password_secret
}

output "scheduler_job_names" {
  description = "One Cloud Scheduler job per shard."
  value       = module.kafka_backup.scheduler_job_names
}
