# One job per shard: Cloud Scheduler is the fan-out, nothing home-made coordinates the shards.
#
# Deadlines: an HTTP target's attempt_deadline is at most 30 minutes, while an HTTP function may run
# for 60. The jobs wait min(timeout_seconds, 1800) seconds and the function is told the same budget
# (KAFKA_BACKUP_TIMEOUT_SECONDS), so it stops starting work KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS
# before the job would give up, commits what it has and answers. The margin absorbs the cold start
# (the job's clock starts before the handler's). A run that still overruns is marked failed by the
# job and retried; the retry resumes where the commit chain ends, and two overlapping runs can never
# commit the same range.
resource "google_cloud_scheduler_job" "backup" {
  count = var.shards

  project          = var.project_id
  region           = coalesce(var.scheduler_region, var.region)
  name             = "${var.name}-shard-${count.index}"
  description      = "Kafka backup, shard ${count.index} of ${var.shards}, via ${var.name}."
  schedule         = var.schedule
  time_zone        = var.time_zone
  paused           = var.scheduler_paused
  attempt_deadline = "${local.run_budget_seconds}s"

  retry_config {
    retry_count          = var.scheduler_retry_count
    min_backoff_duration = "${var.scheduler_min_backoff_seconds}s"
    max_backoff_duration = "${var.scheduler_max_backoff_seconds}s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = local.function_uri
    headers = {
      "Content-Type" = "application/json"
    }
    # The payload contract: {"job": label, "backup": {"shard": {"index": i, "count": N}}}.
    body = base64encode(jsonencode({
      job = "${var.name}-shard-${count.index}"
      backup = {
        shard = {
          index = count.index
          count = var.shards
        }
      }
    }))

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.function_uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}
