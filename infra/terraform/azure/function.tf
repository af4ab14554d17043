################################################################################
# Host storage: the Functions host's own account (package, timer locks, keys)
################################################################################

# Kept apart from the backup account so that the broad data roles the host needs here never
# reach the backups.
resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_59:The Flex Consumption host reaches its storage over the public endpoint unless the app has virtual network integration plus private endpoints; every request still needs an Entra ID token (shared keys are disabled).
  #checkov:skip=CKV_AZURE_35:A default Deny would cut the host off from its own storage unless private endpoints exist, which this module does not create.
  #checkov:skip=CKV2_AZURE_33:Private endpoints need the caller's virtual network and private DNS zones; the account holds only the package and the host's own state and is Entra-only.
  #checkov:skip=CKV2_AZURE_1:Holds only the deployment package and the host's reconstructible state (locks, timer status, keys); Microsoft-managed keys suffice.
  #checkov:skip=CKV_AZURE_206:The host's state and package are recreated by the next deployment and run; locally redundant storage is enough and the backups live in the geo-redundant backup account.
  #checkov:skip=CKV_AZURE_33:Logging the host's internal queues adds cost and no audit value; azurerm 5.x configures queue logging in a separate resource.
  name                     = local.host_storage_account_name
  resource_group_name      = var.resource_group_name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  https_traffic_only_enabled       = true
  min_tls_version                  = "TLS1_2"
  allow_nested_items_to_be_public  = false
  shared_access_key_enabled        = false
  default_to_oauth_authentication  = true
  local_user_enabled               = false
  cross_tenant_replication_enabled = false

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }

    container_delete_retention_policy {
      days = 7
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Holds only the deployment package; read logging would record every host start.
  name                  = var.deployment_container_name
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

################################################################################
# Flex Consumption plan and function app
################################################################################

resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_225:A Flex Consumption (FC1) plan has no instances of its own to spread over zones; a run lost to a zone outage is resumed by the next timer firing.
  #checkov:skip=CKV_AZURE_212:A Flex Consumption (FC1) plan scales per execution from zero; a minimum worker count does not apply.
  name                = "${var.name}-plan"
  resource_group_name = var.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

locals {
  storage_url = "az://${azurerm_storage_container.backup.name}@${azurerm_storage_account.backup.primary_blob_host}${var.backup_prefix == "" ? "" : "/${var.backup_prefix}"}"

  kafka_secret_uri = local.kafka_secret_needed ? azurerm_key_vault_secret.kafka[0].versionless_id : null
  kafka_password_setting = local.kafka_secret_uri == null ? null : (
    var.kafka_password_reference == "platform"
    ? "@Microsoft.KeyVault(SecretUri=${local.kafka_secret_uri})"
    : "secretref:azure-keyvault:${local.kafka_secret_uri}"
  )

  # Settings this module owns; extra_app_settings cannot override them (merge order below).
  managed_app_settings = merge(
    {
      # Host storage through the managed identity. The provider (5.x, hashicorp/terraform-provider-azurerm
      # #29693, #30732) also injects AzureWebJobsStorage as a key-based connection string with an empty
      # key whenever the deployment storage uses an identity; a connection string takes precedence over
      # the __ settings, so it is blanked here. Plans show this setting changing on every run until the
      # provider is fixed; the change is harmless.
      "AzureWebJobsStorage"              = ""
      "AzureWebJobsStorage__accountName" = azurerm_storage_account.host.name
      "AzureWebJobsStorage__credential"  = "managedidentity"

      # One timeout, told to both the host and the run's deadline.
      "AzureFunctionsJobHost__functionTimeout" = local.function_timeout_hms
      "KAFKA_BACKUP_TIMEOUT_SECONDS"           = tostring(var.function_timeout_seconds)
      "KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS"   = tostring(var.deadline_margin_seconds)
      "KAFKA_BACKUP_SCHEDULE"                  = var.schedule
      "KAFKA_BACKUP_LOG_LEVEL"                 = var.log_level

      # The write policy (docs/configuration.md §4.5): a trickling partition is written once per
      # backup_max_lag_seconds rather than on every run.
      "KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES" = tostring(var.backup_segment_min_bytes)
      "KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS"   = tostring(var.backup_max_lag_seconds)

      "KAFKA_BACKUP_STORAGE__URL"             = local.storage_url
      "KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS" = join(",", local.bootstrap_servers)
      "KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL" = local.security_protocol
    },
    var.application_insights_local_authentication_enabled ? {} : {
      "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" = "Authorization=AAD"
    },
    local.sasl_mechanism == null ? {} : {
      "KAFKA_BACKUP_KAFKA__SASL__MECHANISM" = local.sasl_mechanism
    },
    local.kafka_secret_needed ? {
      "KAFKA_BACKUP_KAFKA__SASL__USERNAME" = coalesce(var.kafka_sasl_username, "-")
      "KAFKA_BACKUP_KAFKA__SASL__PASSWORD" = local.kafka_password_setting
    } : {},
    local.sasl_mechanism == "OAUTHBEARER" && var.kafka_oauth_token_provider != null ? merge(
      { "KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER" = var.kafka_oauth_token_provider },
      { for k, v in local.token_provider_options : "KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER_OPTIONS__${upper(k)}" => v },
    ) : {},
    length(var.backup_topics) == 0 ? {} : {
      "KAFKA_BACKUP_BACKUP__TOPICS" = join(",", var.backup_topics)
    },
    length(var.backup_topic_patterns) == 0 ? {} : {
      "KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS" = join(",", var.backup_topic_patterns)
    },
  )

  overridden_app_settings = [
    for k in keys(var.extra_app_settings) : k
    if contains([for m in keys(local.managed_app_settings) : lower(m)], lower(k)) || startswith(lower(k), "azurewebjobsstorage")
  ]
}

resource "azurerm_function_app_flex_consumption" "this" {
  name                = local.function_app
  resource_group_name = var.resource_group_name
  location            = var.location
  service_plan_id     = azurerm_service_plan.this.id

  runtime_name           = "python"
  runtime_version        = var.python_version
  instance_memory_in_mb  = var.instance_memory_mb
  maximum_instance_count = var.maximum_instance_count

  # The zip package goes into a container of the host account, reached with the app's identity:
  # no connection string, no account key.
  storage_container_type      = "blobContainer"
  storage_container_endpoint  = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type = "SystemAssignedIdentity"

  identity {
    type = "SystemAssigned"
  }

  https_only                                     = true
  client_certificate_enabled                     = false
  virtual_network_subnet_id                      = var.function_subnet_id
  zip_deploy_file                                = var.package_zip_path
  webdeploy_publish_basic_authentication_enabled = var.package_zip_path != null

  app_settings = merge(var.extra_app_settings, local.managed_app_settings)

  site_config {
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
    remote_debugging_enabled               = false
    ip_restriction_default_action          = var.function_inbound_default_action
    scm_use_main_ip_restriction            = false
    vnet_route_all_enabled                 = var.function_subnet_id != null
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.event_hubs != (length(var.kafka_bootstrap_servers) > 0)
      error_message = "Give exactly one Kafka endpoint: kafka_bootstrap_servers, or event_hubs_namespace_id (not both)."
    }
    precondition {
      condition     = !local.kafka_secret_needed || var.kafka_sasl_username != null
      error_message = "kafka_sasl_mechanism ${coalesce(local.sasl_mechanism, "-")} needs kafka_sasl_username (and kafka_sasl_password when the secret is first written)."
    }
    precondition {
      condition     = local.sasl_mechanism == null || startswith(local.security_protocol, "SASL_")
      error_message = "kafka_sasl_mechanism is set but kafka_security_protocol is ${local.security_protocol}; use SASL_SSL (or SASL_PLAINTEXT)."
    }
    precondition {
      condition     = local.sasl_mechanism != "OAUTHBEARER" || var.kafka_oauth_token_provider != null
      error_message = "OAUTHBEARER (and Event Hubs) needs kafka_oauth_token_provider, the package's \"module:callable\" that returns a token provider for the managed identity."
    }
    precondition {
      condition     = var.deadline_margin_seconds < var.function_timeout_seconds
      error_message = "deadline_margin_seconds (${var.deadline_margin_seconds}) must be below function_timeout_seconds (${var.function_timeout_seconds})."
    }
    precondition {
      condition     = length(local.overridden_app_settings) == 0
      error_message = "extra_app_settings may not set settings this module manages: ${join(", ", local.overridden_app_settings)}."
    }
  }
}
