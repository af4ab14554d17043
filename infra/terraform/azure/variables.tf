################################################################################
# General
################################################################################

variable "name" {
  description = "Base name of every resource. Lowercase letters, digits and hyphens, 3-24 characters. Globally unique names (function app, storage accounts, key vault) get a short stable suffix derived from the subscription, resource group and this name, unless given explicitly below."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 3-24 lowercase letters, digits or single hyphens, starting with a letter and ending with a letter or digit."
  }
}

variable "resource_group_name" {
  description = "Name of an existing resource group that receives every resource of this module."
  type        = string
}

variable "location" {
  description = "Azure region of every resource, e.g. \"westeurope\". Flex Consumption must be available there."
  type        = string

  validation {
    condition     = length(trimspace(var.location)) > 0
    error_message = "location must not be empty."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

################################################################################
# Explicit names (null derives one from `name`)
################################################################################

variable "function_app_name" {
  description = "Exact function app name (global: <name>.azurewebsites.net). At most 32 characters, so the Functions host ID stays unique. Null derives \"<name>-<suffix>\"."
  type        = string
  default     = null

  validation {
    condition     = var.function_app_name == null || can(regex("^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$", var.function_app_name))
    error_message = "function_app_name must be 2-32 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "backup_storage_account_name" {
  description = "Exact name of the storage account that holds the backups (global, 3-24 lowercase letters and digits). Null derives one from `name`."
  type        = string
  default     = null

  validation {
    condition     = var.backup_storage_account_name == null || can(regex("^[a-z0-9]{3,24}$", var.backup_storage_account_name))
    error_message = "backup_storage_account_name must be 3-24 lowercase letters or digits."
  }
}

variable "host_storage_account_name" {
  description = "Exact name of the function host's own storage account (deployment package, timer locks, host keys). Null derives one from `name`."
  type        = string
  default     = null

  validation {
    condition     = var.host_storage_account_name == null || can(regex("^[a-z0-9]{3,24}$", var.host_storage_account_name))
    error_message = "host_storage_account_name must be 3-24 lowercase letters or digits."
  }
}

variable "key_vault_name" {
  description = "Exact key vault name (global, 3-24 letters, digits and single hyphens). Null derives \"kv-<name>-<suffix>\"."
  type        = string
  default     = null

  validation {
    condition     = var.key_vault_name == null || (can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.key_vault_name)) && !strcontains(coalesce(var.key_vault_name, "x"), "--"))
    error_message = "key_vault_name must be 3-24 letters, digits or single hyphens, starting with a letter and ending with a letter or digit."
  }
}

################################################################################
# Backup storage (storage account and container)
################################################################################

variable "backup_container_name" {
  description = "Name of the private blob container that holds the backups. The function's data role is scoped to this container only."
  type        = string
  default     = "kafka-backup"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$", var.backup_container_name)) && !strcontains(var.backup_container_name, "--")
    error_message = "backup_container_name must be 3-63 lowercase letters, digits or single hyphens, starting and ending with a letter or digit."
  }
}

variable "backup_prefix" {
  description = "Key prefix under the container where this deployment's backups live (empty for the container root)."
  type        = string
  default     = ""

  validation {
    condition     = var.backup_prefix == "" || can(regex("^[^/\\s]+(/[^/\\s]+)*$", var.backup_prefix))
    error_message = "backup_prefix must be empty or a path without leading, trailing or doubled slashes and without spaces."
  }
}

variable "storage_replication_type" {
  description = "Replication of the backup storage account. A backup should outlive a zone or region outage: GRS (default), RAGRS, ZRS, GZRS, RAGZRS; LRS only for tests."
  type        = string
  default     = "GRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "infrastructure_encryption_enabled" {
  description = "Encrypt the backup account's data a second time at the infrastructure layer (double encryption). Changing it re-creates the account."
  type        = bool
  default     = true
}

variable "blob_soft_delete_retention_days" {
  description = "Days a deleted or overwritten blob (and blob version) stays recoverable (blob soft delete), 1-365."
  type        = number
  default     = 30

  validation {
    condition     = var.blob_soft_delete_retention_days >= 1 && var.blob_soft_delete_retention_days <= 365 && floor(var.blob_soft_delete_retention_days) == var.blob_soft_delete_retention_days
    error_message = "blob_soft_delete_retention_days must be a whole number between 1 and 365."
  }
}

variable "container_soft_delete_retention_days" {
  description = "Days a deleted container stays recoverable (container soft delete), 1-365."
  type        = number
  default     = 30

  validation {
    condition     = var.container_soft_delete_retention_days >= 1 && var.container_soft_delete_retention_days <= 365 && floor(var.container_soft_delete_retention_days) == var.container_soft_delete_retention_days
    error_message = "container_soft_delete_retention_days must be a whole number between 1 and 365."
  }
}

variable "noncurrent_version_delete_after_days" {
  description = "Delete previous blob versions this many days after they stopped being current (lifecycle rule on the backup container). Versioning is always on, and each run overwrites small index objects, so without this rule old versions accumulate and are billed. Null keeps every version. Versions under an immutability policy are kept until it expires regardless."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_delete_after_days == null || try(var.noncurrent_version_delete_after_days >= 1 && floor(var.noncurrent_version_delete_after_days) == var.noncurrent_version_delete_after_days, false)
    error_message = "noncurrent_version_delete_after_days must be null or a whole number of days >= 1."
  }
}

variable "change_feed_enabled" {
  description = "Record every change to the backup account in the blob change feed (an audit trail of creates and deletes; billed as storage)."
  type        = bool
  default     = false
}

variable "change_feed_retention_days" {
  description = "Days the change feed is kept when enabled (1-146000); null keeps it forever."
  type        = number
  default     = 90

  validation {
    condition     = var.change_feed_retention_days == null || try(var.change_feed_retention_days >= 1 && var.change_feed_retention_days <= 146000, false)
    error_message = "change_feed_retention_days must be null or between 1 and 146000."
  }
}

variable "immutability" {
  description = <<-EOT
    Write-once protection of the backups (WORM). `mode`:
    - "none" (default): soft delete and versioning only.
    - "version": version-level immutability on the backup account (every blob version is kept for
      `period_days` after it is written; overwrites create new versions). Create it unlocked, then set
      `locked = true` in a later apply: a locked policy can never be shortened or removed.
    - "container": a time-based retention policy on the backup container. Blobs in it can then be
      neither overwritten nor deleted for `period_days`, which also stops the backup's own clean-up
      (orphaned segments, index refreshes, `kafka-backup gc`); prefer "version".
  EOT
  type = object({
    mode        = optional(string, "none")
    period_days = optional(number, 30)
    locked      = optional(bool, false)
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["none", "version", "container"], var.immutability.mode)
    error_message = "immutability.mode must be \"none\", \"version\" or \"container\"."
  }

  validation {
    condition     = var.immutability.period_days >= 1 && var.immutability.period_days <= 146000
    error_message = "immutability.period_days must be between 1 and 146000."
  }
}

variable "storage_network_rules" {
  description = "Firewall of the backup storage account. Null leaves it reachable from all networks (access still needs an Entra ID token: shared keys are disabled). With default_action \"Deny\", give the function a subnet (`function_subnet_id`) and allow that subnet here."
  type = object({
    default_action             = optional(string, "Deny")
    bypass                     = optional(set(string), ["AzureServices"])
    ip_rules                   = optional(list(string), [])
    virtual_network_subnet_ids = optional(list(string), [])
  })
  default = null

  validation {
    condition     = var.storage_network_rules == null || contains(["Allow", "Deny"], try(var.storage_network_rules.default_action, ""))
    error_message = "storage_network_rules.default_action must be \"Allow\" or \"Deny\"."
  }
}

variable "storage_diagnostic_log_categories" {
  description = "Blob service resource-log categories of the backup account sent to the Log Analytics workspace (who wrote, deleted or read backups). StorageRead is verbose on a busy backup; empty disables the diagnostic setting."
  type        = set(string)
  default     = ["StorageWrite", "StorageDelete"]

  validation {
    condition     = alltrue([for c in var.storage_diagnostic_log_categories : contains(["StorageRead", "StorageWrite", "StorageDelete"], c)])
    error_message = "storage_diagnostic_log_categories may only contain StorageRead, StorageWrite and StorageDelete."
  }
}

################################################################################
# Function app (Flex Consumption)
################################################################################

variable "schedule" {
  description = "NCRONTAB of the timer trigger (six fields, seconds first, UTC), read by the trigger as %KAFKA_BACKUP_SCHEDULE%. Default: every 15 minutes."
  type        = string
  default     = "0 */15 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.schedule))) == 6 && !strcontains(trimspace(var.schedule), "  ")
    error_message = "schedule must be an NCRONTAB expression with six space-separated fields ({second} {minute} {hour} {day} {month} {day-of-week}), e.g. \"0 */15 * * * *\"."
  }
}

variable "function_timeout_seconds" {
  description = "Function timeout in seconds (60-3600). Sets both the host's functionTimeout and KAFKA_BACKUP_TIMEOUT_SECONDS, so the run stops itself before the platform kills it. Keep it below the schedule's interval."
  type        = number
  default     = 600

  validation {
    condition     = var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 3600 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number between 60 and 3600."
  }
}

variable "deadline_margin_seconds" {
  description = "Seconds before the function timeout at which a run stops starting new work and commits (KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS). Must be below function_timeout_seconds."
  type        = number
  default     = 30

  validation {
    condition     = var.deadline_margin_seconds >= 5
    error_message = "deadline_margin_seconds must be at least 5."
  }
}

variable "log_level" {
  description = "KAFKA_BACKUP_LOG_LEVEL of the function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "python_version" {
  description = "Python version of the Flex Consumption runtime; must match the version the package's wheels were built for."
  type        = string
  default     = "3.11"

  validation {
    condition     = contains(["3.11", "3.12"], var.python_version)
    error_message = "python_version must be \"3.11\" or \"3.12\"."
  }
}

variable "instance_memory_mb" {
  description = "Memory of each Flex Consumption instance in MB (512, 2048 or 4096). Raise it for larger segments (KAFKA_BACKUP_BACKUP__SEGMENT_MAX_BYTES) or many partitions per run."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = "Most instances the app may scale out to (1-1000). A timer function runs as a singleton, so this only bounds cost and concurrency."
  type        = number
  default     = 40

  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000 && floor(var.maximum_instance_count) == var.maximum_instance_count
    error_message = "maximum_instance_count must be a whole number between 1 and 1000."
  }
}

variable "function_subnet_id" {
  description = "Subnet (delegated to Microsoft.App/environments) for outbound virtual network integration, needed to reach private brokers or firewalled storage and key vault. Null: public outbound."
  type        = string
  default     = null
}

variable "function_inbound_default_action" {
  description = "Default inbound access rule of the function app's site. The backup function has no HTTP trigger, so \"Deny\" (default) closes it; deployment goes through the separate SCM site, which stays open to Entra-authenticated callers."
  type        = string
  default     = "Deny"

  validation {
    condition     = contains(["Allow", "Deny"], var.function_inbound_default_action)
    error_message = "function_inbound_default_action must be \"Allow\" or \"Deny\"."
  }
}

variable "deployment_container_name" {
  description = "Container in the host storage account that receives the app's zip package (Flex Consumption deployment storage, reached with the app's managed identity)."
  type        = string
  default     = "app-package"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$", var.deployment_container_name)) && !strcontains(var.deployment_container_name, "--")
    error_message = "deployment_container_name must be 3-63 lowercase letters, digits or single hyphens."
  }
}

variable "package_zip_path" {
  description = "Local path of the function zip package to deploy with Terraform. Null (recommended) leaves deployment to `az functionapp deployment source config-zip`, which authenticates with Entra ID; a path makes the provider publish with basic-auth publishing credentials, which this module then has to enable."
  type        = string
  default     = null
}

variable "host_storage_role_names" {
  description = "Data roles the function's identity gets on its own host storage account (not the backup account). \"Storage Blob Data Owner\" is required (deployment package, timer schedule status and singleton locks, host keys); the queue and table roles serve the host's queues and diagnostic events."
  type        = set(string)
  default     = ["Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"]

  validation {
    condition     = contains(var.host_storage_role_names, "Storage Blob Data Owner") && alltrue([for r in var.host_storage_role_names : contains(["Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"], r)])
    error_message = "host_storage_role_names must contain \"Storage Blob Data Owner\" and may add only \"Storage Queue Data Contributor\" and \"Storage Table Data Contributor\"."
  }
}

variable "extra_app_settings" {
  description = "More app settings, e.g. KAFKA_BACKUP_BACKUP__MAX_SECONDS. Settings this module manages (KAFKA_BACKUP_STORAGE__URL, the schedule, timeout, Kafka connection and AzureWebJobsStorage*) cannot be overridden here. Never put secrets in clear text: use a Key Vault reference."
  type        = map(string)
  default     = {}
}

################################################################################
# Kafka
################################################################################

variable "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers as HOST:PORT. Leave empty when event_hubs_namespace_id is set (the namespace's Kafka endpoint is used)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.kafka_bootstrap_servers : can(regex("^[^\\s:,]+:[0-9]{1,5}$", s))])
    error_message = "Each kafka_bootstrap_servers entry must be HOST:PORT."
  }
}

variable "kafka_security_protocol" {
  description = "Kafka security protocol. Ignored with Event Hubs (always SASL_SSL)."
  type        = string
  default     = "SASL_SSL"

  validation {
    condition     = contains(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], var.kafka_security_protocol)
    error_message = "kafka_security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  }
}

variable "kafka_sasl_mechanism" {
  description = "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (username and password; the password is kept in the module's key vault) or OAUTHBEARER (token provider). Null for no SASL. Ignored with Event Hubs (always OAUTHBEARER with the managed identity)."
  type        = string
  default     = "SCRAM-SHA-512"

  validation {
    condition     = var.kafka_sasl_mechanism == null || contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"], coalesce(var.kafka_sasl_mechanism, "-"))
    error_message = "kafka_sasl_mechanism must be null, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."
  }
}

variable "kafka_sasl_username" {
  description = "SASL username for PLAIN and SCRAM."
  type        = string
  default     = null
}

variable "kafka_sasl_password" {
  description = "SASL password for PLAIN and SCRAM. Written once into the key vault secret as a write-only value: it never enters the plan or the state. Pass it only when creating or rotating the secret (bump kafka_sasl_password_version to rotate)."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "kafka_sasl_password_version" {
  description = "Version counter of kafka_sasl_password: increase it to write a new password into the key vault."
  type        = number
  default     = 1

  validation {
    condition     = var.kafka_sasl_password_version >= 1 && floor(var.kafka_sasl_password_version) == var.kafka_sasl_password_version
    error_message = "kafka_sasl_password_version must be a whole number >= 1."
  }
}

variable "kafka_password_reference" {
  description = "How the function receives the password: \"platform\" (default) sets a Key Vault reference app setting, @Microsoft.KeyVault(SecretUri=...), that App Service resolves into the environment; \"runtime\" sets secretref:azure-keyvault:<uri>, resolved by the function on each run (a rotation takes effect at once, no restart)."
  type        = string
  default     = "platform"

  validation {
    condition     = contains(["platform", "runtime"], var.kafka_password_reference)
    error_message = "kafka_password_reference must be \"platform\" or \"runtime\"."
  }
}

variable "kafka_oauth_token_provider" {
  description = "For OAUTHBEARER (and Event Hubs): the function package's token provider as \"module:callable\" (KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER), called with kafka_oauth_token_provider_options as keyword arguments."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_oauth_token_provider == null || can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$", coalesce(var.kafka_oauth_token_provider, "-")))
    error_message = "kafka_oauth_token_provider must look like \"package.module:callable\"."
  }
}

variable "kafka_oauth_token_provider_options" {
  description = "Keyword arguments of the token provider (KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER_OPTIONS__<KEY>). With Event Hubs, `scope` defaults to the namespace's \"https://<namespace>.<suffix>/.default\"."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.kafka_oauth_token_provider_options) : can(regex("^[a-z][a-z0-9_]*$", k))])
    error_message = "kafka_oauth_token_provider_options keys must be lowercase identifiers."
  }
}

variable "event_hubs_namespace_id" {
  description = "Resource ID of an Event Hubs namespace (Standard or higher) to back up through its Kafka endpoint. The function's identity gets \"Azure Event Hubs Data Receiver\" on it and connects with OAUTHBEARER; kafka_bootstrap_servers must then be empty."
  type        = string
  default     = null

  validation {
    condition     = var.event_hubs_namespace_id == null || can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.EventHub/namespaces/[^/]+$", coalesce(var.event_hubs_namespace_id, "-")))
    error_message = "event_hubs_namespace_id must be an Event Hubs namespace resource ID (/subscriptions/.../providers/Microsoft.EventHub/namespaces/NAME)."
  }
}

variable "event_hubs_host_suffix" {
  description = "DNS suffix of Event Hubs namespaces in your cloud (servicebus.windows.net in Azure public cloud)."
  type        = string
  default     = "servicebus.windows.net"
}

variable "backup_topics" {
  description = "Exact topic names to back up (KAFKA_BACKUP_BACKUP__TOPICS). With Event Hubs, topics are event hubs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.backup_topics : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "backup_topics entries must be Kafka topic names (letters, digits, '.', '_', '-')."
  }
}

variable "backup_topic_patterns" {
  description = "Full-match regular expressions over topic names (KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS, comma-joined, so a pattern cannot contain a comma)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.backup_topic_patterns : !strcontains(p, ",") && length(p) > 0])
    error_message = "backup_topic_patterns entries must be non-empty and contain no comma (the setting is comma-joined)."
  }
}

variable "backup_segment_min_bytes" {
  description = "Write policy (KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES): a partition is written only when about this many new batch bytes wait, or its oldest unbacked record is backup_max_lag_seconds old. Saves the per-run segment and commit writes of partitions that only trickle. 0 writes every partition on every run. The default (8 MiB) is the cost model's."
  type        = number
  default     = 8388608

  validation {
    condition     = var.backup_segment_min_bytes >= 0 && var.backup_segment_min_bytes <= 1073741824 && floor(var.backup_segment_min_bytes) == var.backup_segment_min_bytes
    error_message = "backup_segment_min_bytes must be a whole number of bytes between 0 (write every run) and 1073741824 (1 GiB)."
  }
}

variable "backup_max_lag_seconds" {
  description = "Recovery-point objective of the write policy (KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS): a partition whose oldest record not yet backed up is this many seconds old is written whatever backup_segment_min_bytes says. The rpo alert fires at twice this."
  type        = number
  default     = 3600

  validation {
    condition     = var.backup_max_lag_seconds > 0
    error_message = "backup_max_lag_seconds must be greater than 0."
  }
}

################################################################################
# Key vault (Kafka secret)
################################################################################

variable "key_vault_sku" {
  description = "Key vault SKU: standard or premium (HSM-backed keys; not needed for a secret)."
  type        = string
  default     = "standard"

  validation {
    condition     = contains(["standard", "premium"], var.key_vault_sku)
    error_message = "key_vault_sku must be standard or premium."
  }
}

variable "key_vault_soft_delete_retention_days" {
  description = "Days a deleted key vault or secret stays recoverable (7-90). Purge protection is always on, so the vault name stays reserved this long after a destroy."
  type        = number
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90 && floor(var.key_vault_soft_delete_retention_days) == var.key_vault_soft_delete_retention_days
    error_message = "key_vault_soft_delete_retention_days must be a whole number between 7 and 90."
  }
}

variable "key_vault_public_network_access_enabled" {
  description = "Whether the key vault accepts traffic from public networks at all (subject to key_vault_network_acls). False requires private endpoints, for Terraform as well as for the function."
  type        = bool
  default     = true
}

variable "key_vault_network_acls" {
  description = "Key vault firewall. Null allows all networks (access still needs an RBAC role). With default_action \"Deny\", allow the function's subnet (and set function_subnet_id) and the address Terraform runs from, which writes the secret."
  type = object({
    default_action             = optional(string, "Deny")
    bypass                     = optional(string, "AzureServices")
    ip_rules                   = optional(list(string), [])
    virtual_network_subnet_ids = optional(list(string), [])
  })
  default = null

  validation {
    condition     = var.key_vault_network_acls == null || (contains(["Allow", "Deny"], try(var.key_vault_network_acls.default_action, "")) && contains(["AzureServices", "None"], try(var.key_vault_network_acls.bypass, "")))
    error_message = "key_vault_network_acls.default_action must be Allow or Deny and bypass AzureServices or None."
  }
}

variable "assign_deployer_secrets_officer" {
  description = "Grant the identity running Terraform \"Key Vault Secrets Officer\" on the vault so it can write the Kafka secret (an RBAC vault grants nobody data access by default). Set false if that identity already holds a suitable role."
  type        = bool
  default     = true
}

################################################################################
# Monitoring (Log Analytics, Application Insights, alerts)
################################################################################

variable "log_analytics_workspace_id" {
  description = "Existing Log Analytics workspace for Application Insights and the storage logs. Null creates one."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the created workspace and of Application Insights, in days (30, 60, 90, 120, 180, 270, 365, 550 or 730)."
  type        = number
  default     = 90

  validation {
    condition     = contains([30, 60, 90, 120, 180, 270, 365, 550, 730], var.log_retention_days)
    error_message = "log_retention_days must be one of 30, 60, 90, 120, 180, 270, 365, 550, 730."
  }
}

variable "application_insights_local_authentication_enabled" {
  description = "Accept telemetry authenticated by the connection string's instrumentation key alone. False (default) requires Entra ID: the function's identity gets \"Monitoring Metrics Publisher\" and APPLICATIONINSIGHTS_AUTHENTICATION_STRING is set."
  type        = bool
  default     = false
}

variable "create_alerts" {
  description = "Create the log alert rules (failures, gaps, lag, no successful run)."
  type        = bool
  default     = true
}

variable "alert_action_group_ids" {
  description = "Action groups (IDs) notified by every alert. Empty: the alerts fire in Azure Monitor without notifying anyone."
  type        = list(string)
  default     = []
}

variable "alert_severity" {
  description = "Severity of the alerts, 0 (critical) to 4 (verbose)."
  type        = number
  default     = 1

  validation {
    condition     = contains([0, 1, 2, 3, 4], var.alert_severity)
    error_message = "alert_severity must be 0, 1, 2, 3 or 4."
  }
}

variable "alert_evaluation_frequency" {
  description = "How often the failure, gap and lag alerts run their query, and the window each looks at (ISO 8601: PT5M, PT10M, PT15M, PT30M, PT45M, PT1H). Log alerts are billed per rule and frequency."
  type        = string
  default     = "PT15M"

  validation {
    condition     = contains(["PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H"], var.alert_evaluation_frequency)
    error_message = "alert_evaluation_frequency must be PT5M, PT10M, PT15M, PT30M, PT45M or PT1H."
  }
}

variable "lag_alert_threshold_records" {
  description = "Alert when a run ends with more than this many records still to back up (lag summed over its partitions). Null disables the lag alert."
  type        = number
  default     = 1000000

  validation {
    condition     = var.lag_alert_threshold_records == null || try(var.lag_alert_threshold_records >= 0, false)
    error_message = "lag_alert_threshold_records must be null or >= 0."
  }
}

variable "no_success_alert_minutes" {
  description = "Alert when no run has succeeded for this many minutes (5-2880). Make it a few schedule intervals long. Null disables the alert."
  type        = number
  default     = 120

  validation {
    condition     = var.no_success_alert_minutes == null || try(var.no_success_alert_minutes >= 5 && var.no_success_alert_minutes <= 2880, false)
    error_message = "no_success_alert_minutes must be null or between 5 and 2880."
  }
}
