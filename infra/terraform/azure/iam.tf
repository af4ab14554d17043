################################################################################
# Role assignments of the function's system-assigned identity, least privilege
#
# - backups:       Storage Blob Data Contributor on the backup CONTAINER (not the account)
# - host storage:  var.host_storage_role_names on the separate host account only
# - Kafka secret:  Key Vault Secrets User on that one SECRET (not the vault)
# - telemetry:     Monitoring Metrics Publisher on the Application Insights component
#                  (only when it requires Entra ID authentication)
# - Event Hubs:    Azure Event Hubs Data Receiver on the namespace (only when it is the source)
################################################################################

locals {
  function_principal_id = azurerm_function_app_flex_consumption.this.identity[0].principal_id
}

resource "azurerm_role_assignment" "backup_container" {
  description          = "kafka-backup ${var.name}: read and write backups in this container only."
  scope                = azurerm_storage_container.backup.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
}

# The Functions host keeps its package (deployment container), timer schedule status and singleton
# locks (azure-webjobs-hosts), host keys (azure-webjobs-secrets), and, with the queue and table roles,
# its internal queues and diagnostic events in this account. It creates those containers itself,
# so the roles are scoped to the account; the account holds nothing else.
resource "azurerm_role_assignment" "host_storage" {
  for_each = var.host_storage_role_names

  description          = "kafka-backup ${var.name}: Functions host storage."
  scope                = azurerm_storage_account.host.id
  role_definition_name = each.value
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "kafka_secret" {
  count = local.kafka_secret_needed ? 1 : 0

  description          = "kafka-backup ${var.name}: read the Kafka SASL password (this secret only)."
  scope                = azurerm_key_vault_secret.kafka[0].resource_versionless_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
}

# The identity running Terraform needs to write the secret into the RBAC vault.
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  count = local.kafka_secret_needed && var.assign_deployer_secrets_officer ? 1 : 0

  description          = "kafka-backup ${var.name}: lets Terraform write the Kafka secret."
  scope                = azurerm_key_vault.this[0].id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "metrics_publisher" {
  count = var.application_insights_local_authentication_enabled ? 0 : 1

  description          = "kafka-backup ${var.name}: send telemetry with Entra ID authentication."
  scope                = azurerm_application_insights.this.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "event_hubs_receiver" {
  count = local.event_hubs ? 1 : 0

  description          = "kafka-backup ${var.name}: consume the namespace's event hubs through the Kafka endpoint."
  scope                = var.event_hubs_namespace_id
  role_definition_name = "Azure Event Hubs Data Receiver"
  principal_id         = local.function_principal_id
  principal_type       = "ServicePrincipal"
}
