# Alerts read the one structured summary line each run logs (the function contract):
#   {"event": "backup_run", "run_id": ..., "ok": true|false, "stop_reason": ..., "shard": "I/N",
#    "gap_offsets": ..., "lag_records": ..., "rpo_seconds": ..., "severity": "INFO"|"ERROR", ...}
# Cloud Run turns a JSON line on stdout into jsonPayload (and its "severity" into the entry's
# severity), so log-based metrics see every run whether or not the function's own custom metrics
# arrive. A run that dies before logging (crash, OOM, timeout) is caught by the HTTP 5xx condition.
locals {
  run_log_filter     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.service_name}\""
  summary_log_filter = "${local.run_log_filter} AND jsonPayload.event=\"backup_run\""
  log_metric_prefix  = "logging.googleapis.com/user/"
  shard_label        = { shard = "EXTRACT(jsonPayload.shard)" }
  alert_auto_close   = "3600s"
}

################################################################################
# Log-based metrics
################################################################################

resource "google_logging_metric" "failed_runs" {
  count = var.create_alerts ? 1 : 0

  project          = var.project_id
  name             = "${var.name}/failed_runs"
  description      = "Backup runs of ${var.name} that logged ok=false at severity ERROR or above."
  filter           = "${local.summary_log_filter} AND severity>=ERROR AND jsonPayload.ok=false"
  label_extractors = local.shard_label

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "shard"
      value_type  = "STRING"
      description = "Shard as I/N."
    }
  }
}

resource "google_logging_metric" "successful_runs" {
  count = var.create_alerts ? 1 : 0

  project          = var.project_id
  name             = "${var.name}/successful_runs"
  description      = "Backup runs of ${var.name} that logged ok=true."
  filter           = "${local.summary_log_filter} AND jsonPayload.ok=true"
  label_extractors = local.shard_label

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "shard"
      value_type  = "STRING"
      description = "Shard as I/N."
    }
  }
}

# Only runs that recorded a gap produce a point, and its value is the number of offsets lost.
resource "google_logging_metric" "gap_offsets" {
  count = var.create_alerts ? 1 : 0

  project          = var.project_id
  name             = "${var.name}/gap_offsets"
  description      = "Offsets that Kafka retention removed before ${var.name} backed them up, per run that found a gap."
  filter           = "${local.summary_log_filter} AND jsonPayload.gap_offsets>0"
  value_extractor  = "EXTRACT(jsonPayload.gap_offsets)"
  label_extractors = local.shard_label

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key         = "shard"
      value_type  = "STRING"
      description = "Shard as I/N."
    }
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 64
      growth_factor      = 2
      scale              = 1
    }
  }
}

# The threshold lives in the filter, so the count is exact (no histogram interpolation).
resource "google_logging_metric" "lagging_runs" {
  count = var.create_alerts && var.lag_alert_threshold_records != null ? 1 : 0

  project          = var.project_id
  name             = "${var.name}/lagging_runs"
  description      = "Backup runs of ${var.name} that ended more than ${coalesce(var.lag_alert_threshold_records, 0)} records behind."
  filter           = "${local.summary_log_filter} AND jsonPayload.lag_records>${coalesce(var.lag_alert_threshold_records, 0)}"
  label_extractors = local.shard_label

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "shard"
      value_type  = "STRING"
      description = "Shard as I/N."
    }
  }
}

# The write policy writes a partition at the latest when its oldest unbacked record is
# backup_max_lag_seconds old, so a run reporting twice that has not kept the promised RPO.
resource "google_logging_metric" "rpo_exceeded_runs" {
  count = var.create_alerts ? 1 : 0

  project          = var.project_id
  name             = "${var.name}/rpo_exceeded_runs"
  description      = "Backup runs of ${var.name} whose oldest record not yet backed up was more than ${2 * var.backup_max_lag_seconds} seconds old (twice backup_max_lag_seconds)."
  filter           = "${local.summary_log_filter} AND jsonPayload.rpo_seconds>${2 * var.backup_max_lag_seconds}"
  label_extractors = local.shard_label

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "shard"
      value_type  = "STRING"
      description = "Shard as I/N."
    }
  }
}

################################################################################
# Alert policies
################################################################################

resource "google_monitoring_alert_policy" "failures" {
  count = var.create_alerts ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: backup run failed"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A run of the Cloud Run function `${var.name}` failed: a partition (or the whole run) failed and the run logged `ok=false`, or the function answered HTTP 5xx (also when it crashed, ran out of memory or hit its timeout before logging). The next scheduled run resumes where the backup ends. Logs: `${local.summary_log_filter}`."
  }

  alert_strategy {
    auto_close = local.alert_auto_close
  }

  conditions {
    display_name = "A run logged ok=false"
    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}${google_logging_metric.failed_runs[0].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.shard"]
      }
      trigger {
        count = 1
      }
    }
  }

  dynamic "conditions" {
    for_each = var.alert_on_http_errors ? [1] : []
    content {
      display_name = "The function answered HTTP 5xx"
      condition_threshold {
        filter          = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=\"${local.service_name}\" AND metric.label.response_code_class=\"5xx\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aggregations {
          alignment_period     = "300s"
          per_series_aligner   = "ALIGN_SUM"
          cross_series_reducer = "REDUCE_SUM"
        }
        trigger {
          count = 1
        }
      }
    }
  }
}

resource "google_monitoring_alert_policy" "gaps" {
  count = var.create_alerts ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: offsets lost before backup (gap)"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A run of `${var.name}` recorded a gap: Kafka retention (or DeleteRecords) removed offsets before they were backed up, and their data is not in the backup. The run itself succeeded. Raise the topics' retention, run more often (schedule) or with more shards. `kafka-backup ls` / `verify` list the gaps."
  }

  alert_strategy {
    auto_close = local.alert_auto_close
  }

  conditions {
    display_name = "gap_offsets > 0"
    condition_threshold {
      # Only gap runs write points, each >= 1, so any point in the window breaches 0.
      filter          = "metric.type=\"${local.log_metric_prefix}${google_logging_metric.gap_offsets[0].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["metric.label.shard"]
      }
      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "lag" {
  count = var.create_alerts && var.lag_alert_threshold_records != null ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: backup lag above ${coalesce(var.lag_alert_threshold_records, 0)} records"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A run of `${var.name}` ended more than ${coalesce(var.lag_alert_threshold_records, 0)} records behind the partitions' end offsets it snapshotted. If this persists the backup falls behind and retention may outrun it: raise memory/CPU, the timeout, the shard count or the schedule frequency."
  }

  alert_strategy {
    auto_close = local.alert_auto_close
  }

  conditions {
    display_name = "lag_records > ${coalesce(var.lag_alert_threshold_records, 0)}"
    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}${google_logging_metric.lagging_runs[0].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.shard"]
      }
      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "rpo" {
  count = var.create_alerts ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: backup RPO above ${2 * var.backup_max_lag_seconds} s"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "A run of `${var.name}` ended with a record more than ${2 * var.backup_max_lag_seconds} seconds old (twice `backup_max_lag_seconds`, the write policy's recovery-point objective) still not backed up. Runs fail, stop at their deadline with work left, or come too rarely: check the failures alert, then raise the timeout, the shard count or the schedule frequency."
  }

  alert_strategy {
    auto_close = local.alert_auto_close
  }

  conditions {
    display_name = "rpo_seconds > ${2 * var.backup_max_lag_seconds}"
    condition_threshold {
      filter          = "metric.type=\"${local.log_metric_prefix}${google_logging_metric.rpo_exceeded_runs[0].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.shard"]
      }
      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "no_success" {
  count = var.create_alerts ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: no successful run for ${var.no_success_alert_minutes} min"
  combiner              = "OR"
  notification_channels = var.notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "No run of `${var.name}` has logged ok=true for ${var.no_success_alert_minutes} minutes in at least one shard (each shard that has ever succeeded is watched on its own). Check the Cloud Scheduler jobs `${var.name}-shard-*` (paused? failing?) and the function's logs."
  }

  conditions {
    display_name = "No ok=true summary for ${var.no_success_alert_minutes} min"
    condition_absent {
      filter   = "metric.type=\"${local.log_metric_prefix}${google_logging_metric.successful_runs[0].name}\" AND resource.type=\"cloud_run_revision\""
      duration = "${var.no_success_alert_minutes * 60}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.shard"]
      }
      trigger {
        count = 1
      }
    }
  }
}
