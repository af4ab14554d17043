output "storage_account_name" {
  description = "Name of the storage account holding the backups."
  value       = azurerm_storage_account.backup.name
}

output "storage_account_id" {
  description = "Resource ID of the storage account holding the backups."
  value       = azurerm_storage_account.backup.id
}

output "storage_container_name" {
  description = "Name of the private container holding the backups."
  value       = azurerm_storage_container.backup.name
}

output "storage_container_id" {
  description = "Resource ID of the backup container (the scope of the function's Storage Blob Data Contributor role)."
  value       = azurerm_storage_container.backup.id
}

output "storage_url" {
  description = "Backup location as the function sees it (KAFKA_BACKUP_STORAGE__URL); pass it to `kafka-backup ls/verify/restore --storage` with an identity that has a data role on the container."
  value       = local.storage_url
}

output "host_storage_account_name" {
  description = "Name of the Functions host's own storage account (deployment package, locks, keys)."
  value       = azurerm_storage_account.host.name
}

output "function_app_name" {
  description = "Name of the function app (for `az functionapp deployment source config-zip --name`)."
  value       = azurerm_function_app_flex_consumption.this.name
}

output "function_app_id" {
  description = "Resource ID of the function app."
  value       = azurerm_function_app_flex_consumption.this.id
}

output "function_principal_id" {
  description = "Object ID of the function app's system-assigned managed identity."
  value       = local.function_principal_id
}

output "key_vault_id" {
  description = "Resource ID of the key vault holding the Kafka password (null when no SASL password is used)."
  value       = try(azurerm_key_vault.this[0].id, null)
}

output "key_vault_uri" {
  description = "URI of the key vault holding the Kafka password (null when no SASL password is used)."
  value       = try(azurerm_key_vault.this[0].vault_uri, null)
}

output "kafka_secret_id" {
  description = "Versionless URI of the Kafka password secret, as referenced by the app setting (null when no SASL password is used)."
  value       = local.kafka_secret_uri
}

output "application_insights_id" {
  description = "Resource ID of the Application Insights component (the scope of the alerts)."
  value       = azurerm_application_insights.this.id
}

output "application_insights_connection_string" {
  description = "Connection string of the Application Insights component."
  value       = azurerm_application_insights.this.connection_string
  sensitive   = true
}

output "log_analytics_workspace_id" {
  description = "Resource ID of the Log Analytics workspace behind Application Insights and the storage logs."
  value       = local.log_analytics_workspace_id
}

output "alert_ids" {
  description = "Resource IDs of the log alert rules, by kind (failure, gaps, lag, rpo, no_success)."
  value       = { for k, v in azurerm_monitor_scheduled_query_rules_alert_v2.this : k => v.id }
}
