data "azurerm_client_config" "current" {}

locals {
  # A short, stable suffix keeps the globally unique names (function app, storage accounts, key
  # vault) distinct across subscriptions and resource groups without the random provider, and
  # known at plan time.
  suffix       = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.resource_group_name}/${var.name}"), 0, 6)
  alnum_name   = replace(var.name, "-", "")
  short_name   = trim(substr(var.name, 0, 14), "-")
  function_app = coalesce(var.function_app_name, "${trim(substr(var.name, 0, 25), "-")}-${local.suffix}")

  backup_storage_account_name = coalesce(var.backup_storage_account_name, "${substr(local.alnum_name, 0, 14)}bk${local.suffix}")
  host_storage_account_name   = coalesce(var.host_storage_account_name, "${substr(local.alnum_name, 0, 14)}fn${local.suffix}")
  key_vault_name              = coalesce(var.key_vault_name, "kv-${local.short_name}-${local.suffix}")

  tags = merge(var.tags, { "kafka-backup" = var.name })

  # Kafka endpoint: either the given brokers or the Event Hubs namespace's Kafka endpoint.
  event_hubs         = var.event_hubs_namespace_id != null
  event_hubs_ns_name = local.event_hubs ? element(split("/", var.event_hubs_namespace_id), 8) : null
  event_hubs_host    = local.event_hubs ? "${local.event_hubs_ns_name}.${var.event_hubs_host_suffix}" : null

  bootstrap_servers = local.event_hubs ? ["${local.event_hubs_host}:9093"] : var.kafka_bootstrap_servers
  security_protocol = local.event_hubs ? "SASL_SSL" : var.kafka_security_protocol
  sasl_mechanism    = local.event_hubs ? "OAUTHBEARER" : var.kafka_sasl_mechanism
  token_provider_options = merge(
    local.event_hubs ? { scope = "https://${local.event_hubs_host}/.default" } : {},
    var.kafka_oauth_token_provider_options,
  )

  # The password lives in the module's key vault only for mechanisms that use one.
  kafka_secret_needed = contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], coalesce(local.sasl_mechanism, "-"))

  function_timeout_hms = format("%02d:%02d:%02d", floor(var.function_timeout_seconds / 3600), floor(var.function_timeout_seconds % 3600 / 60), var.function_timeout_seconds % 60)
}
