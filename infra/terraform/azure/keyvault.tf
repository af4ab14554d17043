################################################################################
# Key vault holding the Kafka SASL password
################################################################################

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109:The firewall is optional (key_vault_network_acls): a default Deny needs the function's subnet and the address Terraform runs from, which the module cannot know.
  #checkov:skip=CKV2_AZURE_32:Private endpoints need the caller's virtual network and private DNS zones; access is RBAC-only, scoped to the one secret.
  count = local.kafka_secret_needed ? 1 : 0

  name                = local.key_vault_name
  resource_group_name = var.resource_group_name
  location            = var.location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = var.key_vault_sku

  # Access by RBAC role assignments only (no access policies), each scoped as narrowly as possible.
  rbac_authorization_enabled      = true
  purge_protection_enabled        = true
  soft_delete_retention_days      = var.key_vault_soft_delete_retention_days
  enabled_for_deployment          = false
  enabled_for_disk_encryption     = false
  enabled_for_template_deployment = false
  public_network_access_enabled   = var.key_vault_public_network_access_enabled

  dynamic "network_acls" {
    for_each = var.key_vault_network_acls == null ? [] : [var.key_vault_network_acls]
    content {
      default_action             = network_acls.value.default_action
      bypass                     = network_acls.value.bypass
      ip_rules                   = network_acls.value.ip_rules
      virtual_network_subnet_ids = network_acls.value.virtual_network_subnet_ids
    }
  }

  tags = local.tags
}

resource "azurerm_key_vault_secret" "kafka" {
  #checkov:skip=CKV_AZURE_41:The password's lifetime is set on the Kafka side; a fixed expiry date here would only break backups on that date. Rotate by writing a new version (kafka_sasl_password_version).
  count = local.kafka_secret_needed ? 1 : 0

  name         = "kafka-sasl-password"
  key_vault_id = azurerm_key_vault.this[0].id
  content_type = "text/plain"

  # Write-only: the password is sent to Key Vault but never stored in the plan or the state.
  value_wo         = var.kafka_sasl_password
  value_wo_version = var.kafka_sasl_password_version

  tags = local.tags

  # Writing a secret into an RBAC vault needs a data role, which takes effect only after the
  # assignment exists.
  depends_on = [azurerm_role_assignment.deployer_secrets_officer]
}
