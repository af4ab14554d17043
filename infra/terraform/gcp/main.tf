locals {
  bucket_name        = var.create_bucket ? google_storage_bucket.backup[0].name : var.bucket_name
  source_bucket_name = var.create_source_bucket ? google_storage_bucket.source[0].name : var.source_bucket_name
  source_object      = var.source_archive_path != null ? google_storage_bucket_object.source[0].name : var.source_archive_object

  storage_url = var.storage_prefix == "" ? "gs://${local.bucket_name}" : "gs://${local.bucket_name}/${var.storage_prefix}"

  # GCS refuses Object Versioning on a bucket with a retention policy: one or the other.
  versioning_enabled = var.retention_period_days == null

  # Cloud Scheduler waits at most 30 minutes for an HTTP target. The function is told the smaller
  # of its own timeout and that limit, so that it answers before the job gives up on it.
  scheduler_max_deadline_seconds = 1800
  run_budget_seconds             = min(var.timeout_seconds, local.scheduler_max_deadline_seconds)

  password_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
  uses_password       = contains(local.password_mechanisms, coalesce(var.kafka_sasl_mechanism, "none"))
  password_secret_on  = var.create_kafka_password_secret || var.kafka_password_secret_id != null
  password_secret_id  = var.create_kafka_password_secret ? google_secret_manager_secret.kafka_password[0].secret_id : var.kafka_password_secret_id
  password_secret_ref = local.password_secret_on ? "secretref:gcp-secretmanager:projects/${var.project_id}/secrets/${local.password_secret_id}/versions/${var.kafka_password_secret_version}" : null
}

# The storage service agent must be able to use the key before a CMEK bucket can be created.
data "google_storage_project_service_account" "gcs" {
  count   = var.kms_key_name != null && var.grant_kms_to_storage_service_agent ? 1 : 0
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count         = var.kms_key_name != null && var.grant_kms_to_storage_service_agent ? 1 : 0
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = data.google_storage_project_service_account.gcs[0].member
}

################################################################################
# Backup bucket
################################################################################

resource "google_storage_bucket" "backup" {
  #checkov:skip=CKV_GCP_62:Usage logs are opt-in (var.access_log_bucket names the log bucket); Cloud Audit Logs data-access logs are Google's recommended record of object access.
  count = var.create_bucket ? 1 : 0

  project                     = var.project_id
  name                        = coalesce(var.bucket_name, "${var.project_id}-${var.name}")
  location                    = coalesce(var.bucket_location, var.region)
  storage_class               = var.bucket_storage_class
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = local.versioning_enabled
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_days * 86400
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = var.abort_incomplete_multipart_upload_days
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "retention_policy" {
    for_each = var.retention_period_days == null ? [] : [var.retention_period_days]
    content {
      retention_period = retention_policy.value * 86400
      is_locked        = var.retention_policy_locked
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = "${var.name}-backup"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}

################################################################################
# Function source
################################################################################

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Usage logs are opt-in (var.access_log_bucket); the source bucket holds only the function's build input.
  count = var.create_source_bucket ? 1 : 0

  project                     = var.project_id
  name                        = coalesce(var.source_bucket_name, "${var.project_id}-${var.name}-source")
  location                    = var.region
  force_destroy               = true # build input only: re-uploaded from source_archive_path on apply
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = "${var.name}-source"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  count = var.source_archive_path != null ? 1 : 0

  bucket       = local.source_bucket_name
  name         = "${var.name}/source-${filemd5(var.source_archive_path)}.zip"
  source       = var.source_archive_path
  content_type = "application/zip"
}
