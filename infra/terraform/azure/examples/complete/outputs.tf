output "function_app_name" {
  description = "Deploy the package with: az functionapp deployment source config-zip -g <rg> -n <this> --src package.zip"
  value       = module.kafka_backup.function_app_name
}

output "function_principal_id" {
  description = "The function's managed identity."
  value       = module.kafka_backup.function_principal_id
}

output "storage_url" {
  description = "Where the backups are written."
  value       = module.kafka_backup.storage_url
}

output "alert_ids" {
  description = "The log alert rules."
  value       = module.kafka_backup.alert_ids
}
