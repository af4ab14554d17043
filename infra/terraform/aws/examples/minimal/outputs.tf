output "storage_url" {
  description = "Where the backups are; pass it to `kafka-backup ls --storage` or `kafka-backup restore --storage`."
  value       = module.kafka_backup.storage_url
}

output "function_name" {
  description = "Name of the backup function."
  value       = module.kafka_backup.function_name
}
