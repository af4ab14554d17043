# Everything switched on: an Event Hubs namespace backed up through its Kafka endpoint with the
# function's managed identity (no password anywhere), the function inside a virtual network,
# firewalled backup storage, version-level immutability, and alerts that page an action group.

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = var.tags
}

################################################################################
# Network: the function's outbound traffic leaves through this subnet
################################################################################

resource "azurerm_virtual_network" "this" {
  name                = "${var.name}-vnet"
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location
  address_space       = [var.address_space]
  tags                = var.tags
}

resource "azurerm_subnet" "function" {
  name                 = "function"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [cidrsubnet(var.address_space, 2, 0)]

  # Flex Consumption integrates with subnets delegated to Container Apps environments.
  delegation {
    name = "flex-consumption"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }

  service_endpoint {
    service = "Microsoft.Storage"
  }

  service_endpoint {
    service = "Microsoft.EventHub"
  }
}

# Outbound only: the function initiates every connection (Kafka, storage, Key Vault, telemetry).
resource "azurerm_network_security_group" "function" {
  name                = "${var.name}-function-nsg"
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location

  security_rule {
    name                       = "deny-inbound-internet"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_port_range          = "*"
    destination_port_range     = "*"
    source_address_prefix      = "Internet"
    destination_address_prefix = "*"
  }

  tags = var.tags
}

resource "azurerm_subnet_network_security_group_association" "function" {
  subnet_id                 = azurerm_subnet.function.id
  network_security_group_id = azurerm_network_security_group.function.id
}

################################################################################
# The Kafka source: an Event Hubs namespace that accepts Entra ID only
################################################################################

resource "azurerm_eventhub_namespace" "this" {
  name                          = "${var.name}-ehns"
  resource_group_name           = azurerm_resource_group.this.name
  location                      = azurerm_resource_group.this.location
  sku                           = "Standard"
  capacity                      = 1
  local_authentication_enabled  = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true

  network_rulesets {
    default_action                 = "Deny"
    trusted_service_access_enabled = false

    virtual_network_rule {
      subnet_id = azurerm_subnet.function.id
    }
  }

  tags = var.tags
}

################################################################################
# Who gets told
################################################################################

resource "azurerm_monitor_action_group" "oncall" {
  name                = "${var.name}-oncall"
  resource_group_name = azurerm_resource_group.this.name
  short_name          = "kbackup"

  email_receiver {
    name                    = "oncall"
    email_address           = var.alert_email
    use_common_alert_schema = true
  }

  tags = var.tags
}

################################################################################
# The backup
################################################################################

module "kafka_backup" {
  source = "../.."

  name                = var.name
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location
  tags                = var.tags

  # Kafka: the namespace's Kafka endpoint, OAUTHBEARER with the function's managed identity.
  event_hubs_namespace_id    = azurerm_eventhub_namespace.this.id
  kafka_oauth_token_provider = var.kafka_oauth_token_provider
  backup_topic_patterns      = ["orders\\..*", "payments\\..*"]

  # Storage: geo-zone-redundant, firewalled to the function's subnet, write-once versions.
  storage_replication_type = "GZRS"
  backup_prefix            = "prod"
  storage_network_rules = {
    default_action             = "Deny"
    ip_rules                   = var.operator_ip_ranges
    virtual_network_subnet_ids = [azurerm_subnet.function.id]
  }
  immutability = {
    mode        = "version"
    period_days = 35
    locked      = false # set true in a later apply, once the retention is agreed: it cannot be undone
  }
  blob_soft_delete_retention_days      = 35
  container_soft_delete_retention_days = 35
  noncurrent_version_delete_after_days = 40
  change_feed_enabled                  = true
  change_feed_retention_days           = 90
  storage_diagnostic_log_categories    = ["StorageWrite", "StorageDelete", "StorageRead"]

  # Function: every 10 minutes, 8 minute runs, inside the virtual network.
  schedule                 = "0 */10 * * * *"
  function_timeout_seconds = 480
  deadline_margin_seconds  = 45
  instance_memory_mb       = 4096
  maximum_instance_count   = 40
  function_subnet_id       = azurerm_subnet.function.id
  extra_app_settings = {
    KAFKA_BACKUP_BACKUP__SEGMENT_MAX_BYTES = tostring(128 * 1024 * 1024)
  }

  # Monitoring.
  log_retention_days          = 180
  alert_action_group_ids      = [azurerm_monitor_action_group.oncall.id]
  alert_severity              = 1
  alert_evaluation_frequency  = "PT10M"
  lag_alert_threshold_records = 5000000
  no_success_alert_minutes    = 60
}
