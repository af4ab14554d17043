################################################################################
# Backup storage account and its private container
################################################################################

resource "azurerm_storage_account" "backup" {
  #checkov:skip=CKV_AZURE_59:Public network access must stay enabled for the service-endpoint firewall (storage_network_rules) and for a function without virtual network integration; every request still needs an Entra ID token (shared keys are disabled).
  #checkov:skip=CKV_AZURE_35:The firewall is optional (storage_network_rules, default Deny when given): a default Deny needs the caller's subnet or addresses, which the module cannot know.
  #checkov:skip=CKV_AZURE_36:The AzureServices bypass is part of storage_network_rules (its default) when the firewall is used; without a firewall there is nothing to bypass.
  #checkov:skip=CKV2_AZURE_33:Private endpoints need the caller's virtual network and private DNS zones; the account is Entra-only and can be firewalled to the function's subnet instead.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys add a key, its rotation and an identity with key access; the data is encrypted with Microsoft-managed keys, twice with infrastructure_encryption_enabled (default true).
  #checkov:skip=CKV_AZURE_33:The backup account has no queues; azurerm 5.x configures queue logging in a separate resource that would only log an unused service.
  name                     = local.backup_storage_account_name
  resource_group_name      = var.resource_group_name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type
  access_tier              = "Hot"

  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  sftp_enabled                      = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = var.infrastructure_encryption_enabled

  # Shared keys are off, so only user-delegation SAS can exist; keep them short-lived and logged.
  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    # Versioning is not optional: it protects every overwrite and is what version-level
    # immutability builds on.
    versioning_enabled            = true
    change_feed_enabled           = var.change_feed_enabled
    change_feed_retention_in_days = var.change_feed_enabled ? var.change_feed_retention_days : null

    delete_retention_policy {
      days = var.blob_soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.container_soft_delete_retention_days
    }
  }

  dynamic "immutability_policy" {
    for_each = var.immutability.mode == "version" ? [var.immutability] : []
    content {
      allow_protected_append_writes = false
      period_since_creation_in_days = immutability_policy.value.period_days
      state                         = immutability_policy.value.locked ? "Locked" : "Unlocked"
    }
  }

  dynamic "network_rules" {
    for_each = var.storage_network_rules == null ? [] : [var.storage_network_rules]
    content {
      default_action             = network_rules.value.default_action
      bypass                     = network_rules.value.bypass
      ip_rules                   = network_rules.value.ip_rules
      virtual_network_subnet_ids = network_rules.value.virtual_network_subnet_ids
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "backup" {
  #checkov:skip=CKV2_AZURE_21:Blob logging is configured with azurerm_monitor_diagnostic_setting.backup_blob on the blob service (StorageWrite and StorageDelete by default, StorageRead on request: it is voluminous); the check only recognises the older storage insights resource.
  name                  = var.backup_container_name
  storage_account_id    = azurerm_storage_account.backup.id
  container_access_type = "private"
}

resource "azurerm_storage_container_immutability_policy" "backup" {
  count = var.immutability.mode == "container" ? 1 : 0

  storage_container_resource_manager_id = azurerm_storage_container.backup.id
  immutability_period_in_days           = var.immutability.period_days
  locked                                = var.immutability.locked
  protected_append_writes_enabled       = false
  protected_append_writes_all_enabled   = false
}

# Every run rewrites a few small index objects; versioning keeps each old copy. Expire old versions
# of the backup container only (segments are never overwritten, so this touches no backup data).
resource "azurerm_storage_management_policy" "backup" {
  count = var.noncurrent_version_delete_after_days == null ? 0 : 1

  storage_account_id = azurerm_storage_account.backup.id

  rule {
    name    = "expire-noncurrent-versions"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${azurerm_storage_container.backup.name}/"]
    }

    actions {
      version {
        delete_after_days_since_creation = var.noncurrent_version_delete_after_days
      }
    }
  }
}

# Who wrote, deleted (or read) backups: blob service resource logs into the workspace.
resource "azurerm_monitor_diagnostic_setting" "backup_blob" {
  count = length(var.storage_diagnostic_log_categories) > 0 ? 1 : 0

  name                       = "${var.name}-backup-blob"
  target_resource_id         = "${azurerm_storage_account.backup.id}/blobServices/default"
  log_analytics_workspace_id = local.log_analytics_workspace_id

  dynamic "enabled_log" {
    for_each = var.storage_diagnostic_log_categories
    content {
      category = enabled_log.value
    }
  }
}
