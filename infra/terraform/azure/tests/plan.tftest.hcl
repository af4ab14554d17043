# `tofu test` with a mocked azurerm provider: no Azure account is touched, but every expression,
# variable validation and precondition of the module is evaluated against the real provider schema.
# Run from the module directory: tofu init -backend=false && tofu test

mock_provider "azurerm" {
  mock_data "azurerm_client_config" {
    defaults = {
      subscription_id = "00000000-0000-0000-0000-000000000001"
      tenant_id       = "00000000-0000-0000-0000-000000000002"
      object_id       = "00000000-0000-0000-0000-000000000003"
    }
  }

  mock_resource "azurerm_log_analytics_workspace" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/logs"
    }
  }

  mock_resource "azurerm_application_insights" {
    defaults = {
      id                = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Insights/components/appi"
      connection_string = "InstrumentationKey=00000000-0000-0000-0000-000000000004"
    }
  }

  mock_resource "azurerm_service_plan" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Web/serverFarms/plan"
    }
  }

  mock_resource "azurerm_key_vault" {
    defaults = {
      id        = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
      vault_uri = "https://kv.vault.azure.net/"
    }
  }

  mock_resource "azurerm_storage_account" {
    defaults = {
      id                    = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"
      primary_blob_host     = "acct.blob.core.windows.net"
      primary_blob_endpoint = "https://acct.blob.core.windows.net/"
    }
  }

  mock_resource "azurerm_storage_container" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/c"
    }
  }

  mock_resource "azurerm_key_vault_secret" {
    defaults = {
      versionless_id          = "https://kv.vault.azure.net/secrets/kafka-sasl-password"
      resource_versionless_id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/kafka-sasl-password"
    }
  }

  mock_resource "azurerm_function_app_flex_consumption" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Web/sites/app"
      identity = {
        principal_id = "00000000-0000-0000-0000-0000000000aa"
        tenant_id    = "00000000-0000-0000-0000-000000000002"
      }
    }
  }
}

variables {
  name                    = "kafka-backup"
  resource_group_name     = "rg"
  location                = "westeurope"
  kafka_bootstrap_servers = ["b1.example.com:9093", "b2.example.com:9093"]
  kafka_sasl_username     = "backup"
  kafka_sasl_password     = "not-a-real-password"
}

run "scram_defaults" {
  command = apply

  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_SCHEDULE"] == "0 */15 * * * *"
    error_message = "schedule app setting"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_TIMEOUT_SECONDS"] == "600" && azurerm_function_app_flex_consumption.this.app_settings["AzureFunctionsJobHost__functionTimeout"] == "00:10:00"
    error_message = "timeouts must agree"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_STORAGE__URL"] == "az://kafka-backup@acct.blob.core.windows.net"
    error_message = "storage URL: ${azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_STORAGE__URL"]}"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__SASL__PASSWORD"] == "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/kafka-sasl-password)"
    error_message = "password must be a Key Vault reference"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS"] == "b1.example.com:9093,b2.example.com:9093" && azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__SASL__MECHANISM"] == "SCRAM-SHA-512"
    error_message = "Kafka settings"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["AzureWebJobsStorage"] == "" && azurerm_function_app_flex_consumption.this.app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    error_message = "host storage must go through the identity"
  }
  assert {
    condition     = azurerm_role_assignment.backup_container.scope == azurerm_storage_container.backup.id && azurerm_role_assignment.backup_container.principal_id == "00000000-0000-0000-0000-0000000000aa"
    error_message = "blob data role must be scoped to the container, for the app's identity"
  }
  assert {
    condition     = azurerm_role_assignment.kafka_secret[0].scope == azurerm_key_vault_secret.kafka[0].resource_versionless_id
    error_message = "secrets user must be scoped to the secret"
  }
  assert {
    condition     = length(azurerm_role_assignment.host_storage) == 3 && length(azurerm_role_assignment.event_hubs_receiver) == 0
    error_message = "host roles / no Event Hubs role"
  }
  assert {
    condition     = toset(keys(output.alert_ids)) == toset(["failure", "gaps", "lag", "rpo", "no_success"])
    error_message = "five alerts"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES"] == "8388608" && azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS"] == "3600" && azurerm_monitor_scheduled_query_rules_alert_v2.this["rpo"].criteria[0].threshold == 7200
    error_message = "write policy settings (8 MiB, 3600 s) and the RPO alert at twice max lag"
  }
  assert {
    condition     = azurerm_monitor_scheduled_query_rules_alert_v2.this["no_success"].window_duration == "PT2H" && strcontains(azurerm_monitor_scheduled_query_rules_alert_v2.this["no_success"].criteria[0].query, "ago(120m)")
    error_message = "no-success window"
  }
  assert {
    condition     = length(local.backup_storage_account_name) <= 24 && length(local.key_vault_name) <= 24 && length(local.function_app) <= 32
    error_message = "derived names within Azure limits"
  }
}

run "event_hubs" {
  command = apply

  variables {
    kafka_bootstrap_servers     = []
    kafka_sasl_username         = null
    kafka_sasl_password         = null
    event_hubs_namespace_id     = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.EventHub/namespaces/myns"
    kafka_oauth_token_provider  = "kafka_backup_azure.auth:event_hubs_token_provider"
    kafka_password_reference    = "runtime"
    backup_prefix               = "prod/cluster-a"
    lag_alert_threshold_records = null
  }

  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS"] == "myns.servicebus.windows.net:9093" && azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__SASL__MECHANISM"] == "OAUTHBEARER"
    error_message = "Event Hubs Kafka endpoint"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER_OPTIONS__SCOPE"] == "https://myns.servicebus.windows.net/.default"
    error_message = "token scope"
  }
  assert {
    condition     = !contains(keys(azurerm_function_app_flex_consumption.this.app_settings), "KAFKA_BACKUP_KAFKA__SASL__PASSWORD") && length(azurerm_key_vault.this) == 0
    error_message = "no password, no key vault"
  }
  assert {
    condition     = azurerm_role_assignment.event_hubs_receiver[0].scope == var.event_hubs_namespace_id && azurerm_role_assignment.event_hubs_receiver[0].role_definition_name == "Azure Event Hubs Data Receiver"
    error_message = "Event Hubs receiver role"
  }
  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_STORAGE__URL"] == "az://kafka-backup@acct.blob.core.windows.net/prod/cluster-a"
    error_message = "storage URL with prefix"
  }
  assert {
    condition     = !contains(keys(output.alert_ids), "lag")
    error_message = "lag alert disabled by null threshold"
  }
}

run "runtime_secret_reference" {
  command = apply

  variables {
    kafka_password_reference = "runtime"
  }

  assert {
    condition     = azurerm_function_app_flex_consumption.this.app_settings["KAFKA_BACKUP_KAFKA__SASL__PASSWORD"] == "secretref:azure-keyvault:https://kv.vault.azure.net/secrets/kafka-sasl-password"
    error_message = "runtime secret reference"
  }
}

run "two_kafka_endpoints_rejected" {
  command = plan

  variables {
    event_hubs_namespace_id    = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.EventHub/namespaces/myns"
    kafka_oauth_token_provider = "m:f"
  }

  expect_failures = [azurerm_function_app_flex_consumption.this]
}

run "oauth_without_token_provider_rejected" {
  command = plan

  variables {
    kafka_sasl_mechanism = "OAUTHBEARER"
  }

  expect_failures = [azurerm_function_app_flex_consumption.this]
}

run "margin_above_timeout_rejected" {
  command = plan

  variables {
    function_timeout_seconds = 60
    deadline_margin_seconds  = 60
  }

  expect_failures = [azurerm_function_app_flex_consumption.this]
}

run "managed_setting_override_rejected" {
  command = plan

  variables {
    extra_app_settings = { KAFKA_BACKUP_SCHEDULE = "0 0 * * * *" }
  }

  expect_failures = [azurerm_function_app_flex_consumption.this]
}

run "five_field_cron_rejected" {
  command = plan

  variables {
    schedule = "*/15 * * * *"
  }

  expect_failures = [var.schedule]
}
