################################################################################
# Storage
################################################################################

output "bucket_name" {
  description = "Backup bucket name."
  value       = local.bucket_name
}

output "storage_url" {
  description = "Where the backup lives, as the function's KAFKA_BACKUP_STORAGE__URL (and the CLI's --storage for ls/verify/restore)."
  value       = local.storage_url
}

output "source_bucket_name" {
  description = "Bucket holding the function's source archive."
  value       = local.source_bucket_name
}

output "storage_role" {
  description = "Role the function's account holds on the backup bucket (custom role ID or roles/storage.objectUser)."
  value       = local.storage_role
}

################################################################################
# Function
################################################################################

output "function_name" {
  description = "Cloud Run function name."
  value       = google_cloudfunctions2_function.backup.name
}

output "function_id" {
  description = "Cloud Run function resource ID (projects/P/locations/L/functions/F)."
  value       = google_cloudfunctions2_function.backup.id
}

output "function_uri" {
  description = "The function's run.app URL: the Cloud Scheduler target and OIDC audience (reachable only from internal sources)."
  value       = local.function_uri
}

output "cloud_run_service" {
  description = "Name of the Cloud Run service underneath the function (the resource roles/run.invoker is granted on)."
  value       = local.service_name
}

output "run_budget_seconds" {
  description = "KAFKA_BACKUP_TIMEOUT_SECONDS and the jobs' attempt deadline: min(timeout_seconds, 1800)."
  value       = local.run_budget_seconds
}

################################################################################
# Identities and secret
################################################################################

output "function_service_account_email" {
  description = "The function's identity (bucket objects, the password secret, Managed Kafka if configured)."
  value       = google_service_account.function.email
}

output "invoker_service_account_email" {
  description = "Cloud Scheduler's identity: roles/run.invoker on this function's service only."
  value       = google_service_account.invoker.email
}

output "kafka_password_secret" {
  description = "Secret Manager secret of the SASL password (projects/P/secrets/S), or null. Add its value with: gcloud secrets versions add S --data-file=-"
  value       = local.password_secret_on ? "projects/${var.project_id}/secrets/${local.password_secret_id}" : null
}

################################################################################
# Schedule and alerts
################################################################################

output "scheduler_job_names" {
  description = "Cloud Scheduler job names, index = shard."
  value       = google_cloud_scheduler_job.backup[*].name
}

output "scheduler_job_ids" {
  description = "Cloud Scheduler job IDs, index = shard."
  value       = google_cloud_scheduler_job.backup[*].id
}

output "log_metric_types" {
  description = "Cloud Monitoring metric types of the log-based metrics, by name; absent when not created."
  value = {
    for k, name in {
      failed_runs       = one(google_logging_metric.failed_runs[*].name)
      successful_runs   = one(google_logging_metric.successful_runs[*].name)
      gap_offsets       = one(google_logging_metric.gap_offsets[*].name)
      lagging_runs      = one(google_logging_metric.lagging_runs[*].name)
      rpo_exceeded_runs = one(google_logging_metric.rpo_exceeded_runs[*].name)
    } : k => "${local.log_metric_prefix}${name}" if name != null
  }
}

output "alert_policy_ids" {
  description = "Alert policy IDs, by purpose (failures, gaps, lag, rpo, no_success); absent when not created."
  value = {
    for k, id in {
      failures   = one(google_monitoring_alert_policy.failures[*].id)
      gaps       = one(google_monitoring_alert_policy.gaps[*].id)
      lag        = one(google_monitoring_alert_policy.lag[*].id)
      rpo        = one(google_monitoring_alert_policy.rpo[*].id)
      no_success = one(google_monitoring_alert_policy.no_success[*].id)
    } : k => id if id != null
  }
}
