################################################################################
# Project and naming
################################################################################

variable "project_id" {
  description = "Project that holds every resource of this module (bucket, function, identities, schedules, alerts)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits, hyphens), not a project number or name."
  }
}

variable "region" {
  description = "Region of the function, the Cloud Scheduler jobs (unless scheduler_region is set) and, by default, the bucket."
  type        = string
}

variable "name" {
  description = "Base name for every resource (function, service accounts, jobs, metrics). 3-20 characters so that derived service-account IDs stay within 30."
  type        = string
  default     = "kafka-backup"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters: lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  description = "Labels applied to the bucket(s), the function and the secret."
  type        = map(string)
  default     = {}
}

################################################################################
# Backup bucket
################################################################################

variable "create_bucket" {
  description = "Create the backup bucket. When false, bucket_name must name an existing bucket; the module then only grants the function access to it."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Backup bucket name. Default when the module creates it: \"<project_id>-<name>\"."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Bucket location (region, dual-region or multi-region). Default: var.region."
  type        = string
  default     = null
}

variable "bucket_storage_class" {
  description = "Default storage class of the backup bucket. Colder classes have minimum storage durations and retrieval fees; every run reads the chain's newest commit records, so keep the default unless restores are rare and the schedule is sparse."
  type        = string
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.bucket_storage_class)
    error_message = "bucket_storage_class must be STANDARD, NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "storage_prefix" {
  description = "Key prefix under the bucket; the function stores to gs://<bucket>/<storage_prefix>. Empty for the bucket root."
  type        = string
  default     = "kafka"

  validation {
    condition     = !startswith(var.storage_prefix, "/") && !endswith(var.storage_prefix, "/")
    error_message = "storage_prefix must not start or end with \"/\"."
  }
}

variable "force_destroy" {
  description = "Let `destroy` delete a non-empty bucket. Keep false for a backup bucket."
  type        = bool
  default     = false
}

variable "noncurrent_version_retention_days" {
  description = "Days a noncurrent object version (left by an overwrite or delete while versioning is on) is kept before lifecycle deletes it. The backup overwrites only its end-of-chain hints and deletes only orphans, so noncurrent versions stay small."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which lifecycle aborts an unfinished XML multipart upload (a run killed mid-upload leaves one; its parts are billed until aborted)."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be at least 1."
  }
}

variable "soft_delete_retention_days" {
  description = "Soft-delete window of the bucket in days: deleted objects stay restorable for this long. 0 turns soft delete off; otherwise 7 to 90."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_retention_days == 0 || (var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90)
    error_message = "soft_delete_retention_days must be 0 or between 7 and 90."
  }
}

variable "retention_period_days" {
  description = <<-EOT
    Bucket retention policy in days (null: none). Every object must reach this age before it can be
    deleted or replaced. GCS forbids Object Versioning on a bucket with a retention policy, so setting
    this turns versioning off. Costs: the per-partition end-of-chain hint (head.json) cannot be
    rewritten until it is this old, so runs probe forward from an older hint, and orphan segments are
    kept until they are this old. Correctness is unaffected (both are best effort in the engine).
  EOT
  type        = number
  default     = null

  validation {
    condition     = var.retention_period_days == null || try(var.retention_period_days >= 1 && var.retention_period_days <= 36500, false)
    error_message = "retention_period_days must be null or between 1 and 36500."
  }
}

variable "retention_policy_locked" {
  description = "Lock the retention policy. IRREVERSIBLE: a locked policy can never be shortened or removed, and the bucket cannot be deleted until every object has aged out."
  type        = bool
  default     = false
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) used as the bucket's default encryption key (CMEK). Null: Google-managed encryption. The key must be in the bucket's location."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must look like projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "grant_kms_to_storage_service_agent" {
  description = "Grant the project's Cloud Storage service agent roles/cloudkms.cryptoKeyEncrypterDecrypter on kms_key_name (needed once per key; turn off if it is managed elsewhere)."
  type        = bool
  default     = true
}

variable "access_log_bucket" {
  description = "Bucket that receives usage logs of the backup bucket (and of the module's source bucket). Null: no usage logs (Cloud Audit Logs data-access logs are the alternative)."
  type        = string
  default     = null
}

################################################################################
# Function source and build
################################################################################

variable "create_source_bucket" {
  description = "Create a private bucket for the function's source archive. When false, source_bucket_name must name an existing bucket."
  type        = bool
  default     = true
}

variable "source_bucket_name" {
  description = "Bucket holding the source archive. Default when the module creates it: \"<project_id>-<name>-source\"."
  type        = string
  default     = null
}

variable "source_archive_path" {
  description = "Local path of the function's source zip (functions/gcp packaged with the engine). The module uploads it under a content-addressed name, so a changed zip redeploys the function. Set this or source_archive_object."
  type        = string
  default     = null
}

variable "source_archive_object" {
  description = "Name of an already uploaded source zip in the source bucket. Set this or source_archive_path."
  type        = string
  default     = null
}

variable "runtime" {
  description = "Cloud Run functions runtime."
  type        = string
  default     = "python311"
}

variable "entry_point" {
  description = "functions-framework target: backup_http is the HTTP entry point that Cloud Scheduler calls (backup_pubsub is the CloudEvent one, limited to 540 s, not wired here)."
  type        = string
  default     = "backup_http"
}

variable "build_service_account_email" {
  description = "Service account Cloud Build uses to build the function (null: the project's default build account). When the module creates the source bucket, this account gets roles/storage.objectViewer on that bucket only."
  type        = string
  default     = null
}

################################################################################
# Function runtime
################################################################################

variable "memory" {
  description = "Memory per instance (Kubernetes quantity, e.g. 512Mi, 1Gi, 2Gi). Segments are buffered in memory up to the segment size, plus fetch buffers."
  type        = string
  default     = "1Gi"
}

variable "cpu" {
  description = "vCPUs per instance (e.g. \"1\", \"2\"). Must be allowed for the chosen memory."
  type        = string
  default     = "1"
}

variable "timeout_seconds" {
  description = <<-EOT
    Function timeout (60-3600 s for an HTTP function). Cloud Scheduler waits at most 1800 s for an
    HTTP target, so the run budget told to the function (KAFKA_BACKUP_TIMEOUT_SECONDS) and the jobs'
    attempt_deadline are min(timeout_seconds, 1800); above 1800 the extra time is only a backstop.
  EOT
  type        = number
  default     = 1800

  validation {
    condition     = var.timeout_seconds >= 60 && var.timeout_seconds <= 3600 && floor(var.timeout_seconds) == var.timeout_seconds
    error_message = "timeout_seconds must be a whole number between 60 and 3600."
  }
}

variable "deadline_margin_seconds" {
  description = "KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS: the run stops starting work this long before its budget ends. It must cover the cold start (the Scheduler clock starts before the handler's) and the final flush."
  type        = number
  default     = 30

  validation {
    condition     = var.deadline_margin_seconds >= 5
    error_message = "deadline_margin_seconds must be at least 5."
  }
}

variable "max_instances_per_shard" {
  description = "Instances allowed per shard (each instance serves one request at a time). 1 is enough: a shard's runs do not overlap unless a retry meets a still-running attempt, which the commit protocol makes safe anyway."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instances_per_shard >= 1 && floor(var.max_instances_per_shard) == var.max_instances_per_shard
    error_message = "max_instances_per_shard must be a whole number >= 1."
  }
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/L/connectors/C) for brokers on private addresses (self-managed Kafka in a VPC, Managed Service for Apache Kafka). Null: no VPC egress."
  type        = string
  default     = null
}

variable "vpc_connector_egress_settings" {
  description = "Which egress goes through the connector: PRIVATE_RANGES_ONLY (brokers on RFC 1918 addresses; Cloud Storage stays on Google's network) or ALL_TRAFFIC (then the VPC needs Private Google Access or NAT to reach Cloud Storage)."
  type        = string
  default     = "PRIVATE_RANGES_ONLY"

  validation {
    condition     = contains(["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"], var.vpc_connector_egress_settings)
    error_message = "vpc_connector_egress_settings must be PRIVATE_RANGES_ONLY or ALL_TRAFFIC."
  }
}

################################################################################
# Backup settings (function environment, see the function contract)
################################################################################

variable "kafka_bootstrap_servers" {
  description = "Bootstrap brokers as HOST:PORT (KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS)."
  type        = list(string)

  validation {
    condition     = length(var.kafka_bootstrap_servers) > 0 && alltrue([for s in var.kafka_bootstrap_servers : can(regex("^([^\\s:,]+|\\[[0-9a-fA-F:]+\\]):[0-9]{1,5}$", s))])
    error_message = "kafka_bootstrap_servers must be a non-empty list of HOST:PORT."
  }
}

variable "kafka_security_protocol" {
  description = "KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL. Null leaves the engine's default (PLAINTEXT)."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_security_protocol == null || contains(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], coalesce(var.kafka_security_protocol, "PLAINTEXT"))
    error_message = "kafka_security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  }
}

variable "kafka_sasl_mechanism" {
  description = "KAFKA_BACKUP_KAFKA__SASL__MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from Secret Manager) or OAUTHBEARER (token from kafka_sasl_token_provider, e.g. Managed Service for Apache Kafka with the function's own identity)."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_sasl_mechanism == null || contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"], coalesce(var.kafka_sasl_mechanism, "PLAIN"))
    error_message = "kafka_sasl_mechanism must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."
  }
}

variable "kafka_sasl_username" {
  description = "KAFKA_BACKUP_KAFKA__SASL__USERNAME for PLAIN/SCRAM."
  type        = string
  default     = null
}

variable "kafka_sasl_token_provider" {
  description = "KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER for OAUTHBEARER: \"module:callable\" inside the deployed source returning a kafka-python token provider; for Managed Service for Apache Kafka, \"gcp_identity:ManagedKafkaTokenProvider\" (functions/gcp)."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_sasl_token_provider == null || can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$", coalesce(var.kafka_sasl_token_provider, "x:y")))
    error_message = "kafka_sasl_token_provider must look like module:callable."
  }
}

variable "backup_topics" {
  description = "Exact topic names to back up (KAFKA_BACKUP_BACKUP__TOPICS, comma-joined)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.backup_topics : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "backup_topics must be Kafka topic names (letters, digits, '.', '_', '-', at most 249)."
  }
}

variable "backup_topic_patterns" {
  description = "Full-match regular expressions over topic names (KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS, comma-joined, so a pattern cannot contain a comma)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.backup_topic_patterns : length(p) > 0 && !strcontains(p, ",")])
    error_message = "backup_topic_patterns must be non-empty and contain no comma (the list travels comma-joined in one environment variable)."
  }
}

variable "backup_exclude_patterns" {
  description = "Full-match regular expressions of topics to leave out (KAFKA_BACKUP_BACKUP__EXCLUDE_PATTERNS, comma-joined)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.backup_exclude_patterns : length(p) > 0 && !strcontains(p, ",")])
    error_message = "backup_exclude_patterns must be non-empty and contain no comma."
  }
}

variable "backup_max_records" {
  description = "Per-run record budget across partitions (KAFKA_BACKUP_BACKUP__MAX_RECORDS). Null: no record budget, only the deadline."
  type        = number
  default     = null
}

variable "backup_max_bytes" {
  description = "Per-run budget of stored batch bytes (KAFKA_BACKUP_BACKUP__MAX_BYTES). Null: no byte budget."
  type        = number
  default     = null
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
  description = "Recovery-point objective of the write policy (KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS): a partition whose oldest record not yet backed up is this many seconds old is written whatever backup_segment_min_bytes says. The RPO alert fires at twice this."
  type        = number
  default     = 3600

  validation {
    condition     = var.backup_max_lag_seconds > 0
    error_message = "backup_max_lag_seconds must be greater than 0."
  }
}

variable "log_level" {
  description = "KAFKA_BACKUP_LOG_LEVEL."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "environment_variables" {
  description = "Extra environment variables for the function (any KAFKA_BACKUP_* setting not covered above). The module's own keys win on a clash; never put a secret here: use a secretref: reference."
  type        = map(string)
  default     = {}
}

################################################################################
# Kafka password (Secret Manager)
################################################################################

variable "create_kafka_password_secret" {
  description = "Create a Secret Manager secret for the SASL password. Only the secret is created: add its value out of band (gcloud secrets versions add ...) so that it never enters Terraform state."
  type        = bool
  default     = false
}

variable "kafka_password_secret_id" {
  description = "Secret ID (short name, in project_id) of the SASL password: the one to create (default \"<name>-kafka-password\") or an existing one when create_kafka_password_secret is false."
  type        = string
  default     = null
}

variable "kafka_password_secret_version" {
  description = "Secret version the function reads (\"latest\" picks up a rotation at the next run)."
  type        = string
  default     = "latest"
}

variable "secret_replica_locations" {
  description = "Regions for a user-managed replication of the created secret. Empty: automatic replication."
  type        = list(string)
  default     = []
}

################################################################################
# Identity
################################################################################

variable "create_storage_custom_role" {
  description = "Bind a project custom role holding exactly the object and multipart-upload permissions the engine uses (default). False binds the predefined roles/storage.objectUser instead (no iam.roles.create needed by the deployer). Either way the binding is on the backup bucket only."
  type        = bool
  default     = true
}

variable "managed_kafka_cluster_id" {
  description = "Managed Service for Apache Kafka cluster (projects/P/locations/L/clusters/C) the function reads from. Set it to grant the function roles/managedkafka.client (project-level: see README)."
  type        = string
  default     = null

  validation {
    condition     = var.managed_kafka_cluster_id == null || can(regex("^projects/[^/]+/locations/[^/]+/clusters/[^/]+$", var.managed_kafka_cluster_id))
    error_message = "managed_kafka_cluster_id must look like projects/P/locations/L/clusters/C."
  }
}

variable "attach_log_writer_role" {
  description = "Grant the function's account roles/logging.logWriter on the project (needed only if the function writes through the Cloud Logging API rather than stdout)."
  type        = bool
  default     = true
}

variable "attach_metric_writer_role" {
  description = "Grant the function's account roles/monitoring.metricWriter on the project, for the run's figures as Cloud Monitoring custom metrics."
  type        = bool
  default     = true
}

################################################################################
# Schedule
################################################################################

variable "shards" {
  description = "Number of shards: one Cloud Scheduler job per shard, job i sending {\"backup\": {\"shard\": {\"index\": i, \"count\": shards}}}."
  type        = number
  default     = 1

  validation {
    condition     = var.shards >= 1 && var.shards <= 100 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number between 1 and 100."
  }
}

variable "schedule" {
  description = "Cron schedule of every shard's job (unix-cron, in time_zone)."
  type        = string
  default     = "*/15 * * * *"
}

variable "time_zone" {
  description = "Time zone of the schedule (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "scheduler_region" {
  description = "Region of the Cloud Scheduler jobs. Default: var.region."
  type        = string
  default     = null
}

variable "scheduler_paused" {
  description = "Create the jobs paused."
  type        = bool
  default     = false
}

variable "scheduler_retry_count" {
  description = "Retries of a failed attempt (HTTP 5xx, or no answer within the attempt deadline). Safe: a retried run resumes where the chain ends."
  type        = number
  default     = 1

  validation {
    condition     = var.scheduler_retry_count >= 0 && var.scheduler_retry_count <= 5
    error_message = "scheduler_retry_count must be between 0 and 5."
  }
}

variable "scheduler_min_backoff_seconds" {
  description = "Minimum wait before a retry."
  type        = number
  default     = 30
}

variable "scheduler_max_backoff_seconds" {
  description = "Maximum wait before a retry."
  type        = number
  default     = 300
}

################################################################################
# Alerts
################################################################################

variable "create_alerts" {
  description = "Create the log-based metrics and alert policies."
  type        = bool
  default     = true
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel IDs (projects/P/notificationChannels/N) the alert policies notify."
  type        = list(string)
  default     = []
}

variable "no_success_alert_minutes" {
  description = "Alert when a shard has logged no successful run for this many minutes (metric-absence window: 2 to 1410). Make it several schedule periods plus a run."
  type        = number
  default     = 120

  validation {
    condition     = var.no_success_alert_minutes >= 2 && var.no_success_alert_minutes <= 1410 && floor(var.no_success_alert_minutes) == var.no_success_alert_minutes
    error_message = "no_success_alert_minutes must be a whole number between 2 and 1410 (Cloud Monitoring's absence window)."
  }
}

variable "lag_alert_threshold_records" {
  description = "Alert when a run ends with more than this many records still to back up (summary field lag_records). Null: no lag alert."
  type        = number
  default     = null

  validation {
    condition     = var.lag_alert_threshold_records == null || try(var.lag_alert_threshold_records >= 0, false)
    error_message = "lag_alert_threshold_records must be null or >= 0."
  }
}

variable "alert_on_http_errors" {
  description = "Add a condition on the function's HTTP 5xx responses (catches runs that crash, time out or run out of memory before logging their summary)."
  type        = bool
  default     = true
}
