locals {
  # The function contract: KAFKA_BACKUP_ prefix, nested keys joined with "__", secrets as references
  # resolved at run time. Null entries are left out so that the engine's own defaults apply.
  contract_environment = {
    for key, value in {
      KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS    = join(",", var.kafka_bootstrap_servers)
      KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL    = var.kafka_security_protocol
      KAFKA_BACKUP_KAFKA__SASL__MECHANISM      = var.kafka_sasl_mechanism
      KAFKA_BACKUP_KAFKA__SASL__USERNAME       = var.kafka_sasl_username
      KAFKA_BACKUP_KAFKA__SASL__PASSWORD       = local.password_secret_ref
      KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER = var.kafka_sasl_token_provider
      KAFKA_BACKUP_STORAGE__URL                = local.storage_url
      KAFKA_BACKUP_BACKUP__TOPICS              = length(var.backup_topics) > 0 ? join(",", var.backup_topics) : null
      KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS      = length(var.backup_topic_patterns) > 0 ? join(",", var.backup_topic_patterns) : null
      KAFKA_BACKUP_BACKUP__EXCLUDE_PATTERNS    = length(var.backup_exclude_patterns) > 0 ? join(",", var.backup_exclude_patterns) : null
      KAFKA_BACKUP_BACKUP__MAX_RECORDS         = var.backup_max_records == null ? null : tostring(var.backup_max_records)
      KAFKA_BACKUP_BACKUP__MAX_BYTES           = var.backup_max_bytes == null ? null : tostring(var.backup_max_bytes)
      KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES   = tostring(var.backup_segment_min_bytes)
      KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS     = tostring(var.backup_max_lag_seconds)
      KAFKA_BACKUP_TIMEOUT_SECONDS             = tostring(local.run_budget_seconds)
      KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS     = tostring(var.deadline_margin_seconds)
      KAFKA_BACKUP_LOG_LEVEL                   = var.log_level
    } : key => value if value != null
  }

  environment = merge(var.environment_variables, local.contract_environment)

  # The underlying Cloud Run service: the API reports projects/P/locations/L/services/S; keep S.
  service_name = reverse(split("/", google_cloudfunctions2_function.backup.service_config[0].service))[0]
  # The run.app URL: Cloud Run accepts it as the OIDC audience, and internal-only ingress admits
  # Cloud Scheduler (same project) on it.
  function_uri = google_cloudfunctions2_function.backup.service_config[0].uri
}

resource "google_cloudfunctions2_function" "backup" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "Backs up Kafka topics to ${local.storage_url}; one Cloud Scheduler job per shard calls it."
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = var.entry_point
    service_account = var.build_service_account_email == null ? null : "projects/${var.project_id}/serviceAccounts/${var.build_service_account_email}"

    source {
      storage_source {
        bucket = local.source_bucket_name
        object = local.source_object
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.shards * var.max_instances_per_shard
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function.email
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = var.vpc_connector == null ? null : var.vpc_connector_egress_settings
    environment_variables            = local.environment
  }

  lifecycle {
    precondition {
      condition     = var.create_bucket || var.bucket_name != null
      error_message = "create_bucket is false: set bucket_name to the existing backup bucket."
    }
    precondition {
      condition     = var.create_source_bucket || var.source_bucket_name != null
      error_message = "create_source_bucket is false: set source_bucket_name to the bucket holding the source zip."
    }
    precondition {
      condition     = (var.source_archive_path == null) != (var.source_archive_object == null)
      error_message = "Set exactly one of source_archive_path (a local zip to upload) and source_archive_object (an uploaded zip)."
    }
    precondition {
      condition     = length(var.backup_topics) + length(var.backup_topic_patterns) > 0 || contains(keys(var.environment_variables), "KAFKA_BACKUP_BACKUP__TOPICS") || contains(keys(var.environment_variables), "KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS")
      error_message = "Nothing to back up: set backup_topics and/or backup_topic_patterns."
    }
    precondition {
      condition     = !local.uses_password || local.password_secret_on
      error_message = "kafka_sasl_mechanism ${coalesce(var.kafka_sasl_mechanism, "-")} needs a password: set create_kafka_password_secret = true or kafka_password_secret_id."
    }
    precondition {
      condition     = !local.uses_password || var.kafka_sasl_username != null
      error_message = "kafka_sasl_mechanism ${coalesce(var.kafka_sasl_mechanism, "-")} needs kafka_sasl_username."
    }
    precondition {
      condition     = coalesce(var.kafka_sasl_mechanism, "none") != "OAUTHBEARER" || var.kafka_sasl_token_provider != null
      error_message = "kafka_sasl_mechanism OAUTHBEARER needs kafka_sasl_token_provider (module:callable)."
    }
    precondition {
      condition     = var.kafka_sasl_mechanism == null || startswith(coalesce(var.kafka_security_protocol, "PLAINTEXT"), "SASL_")
      error_message = "kafka_sasl_mechanism is set: kafka_security_protocol must be SASL_SSL or SASL_PLAINTEXT."
    }
    precondition {
      condition     = var.deadline_margin_seconds < local.run_budget_seconds / 2
      error_message = "deadline_margin_seconds must be less than half the run budget (min(timeout_seconds, 1800))."
    }
  }

  # The identity must hold its grants before the first scheduled run can use them.
  depends_on = [
    google_storage_bucket_iam_member.function_objects,
    google_secret_manager_secret_iam_member.function_password,
    google_project_iam_member.function_managed_kafka,
  ]
}
