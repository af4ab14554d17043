################################################################################
# Log Analytics workspace and workspace-based Application Insights
################################################################################

resource "azurerm_log_analytics_workspace" "this" {
  count = var.log_analytics_workspace_id == null ? 1 : 0

  name                = "${var.name}-logs"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

locals {
  log_analytics_workspace_id = coalesce(var.log_analytics_workspace_id, try(azurerm_log_analytics_workspace.this[0].id, null))
}

resource "azurerm_application_insights" "this" {
  name                         = "${var.name}-appi"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  application_type             = "other"
  workspace_id                 = local.log_analytics_workspace_id
  retention_in_days            = var.log_retention_days
  local_authentication_enabled = var.application_insights_local_authentication_enabled
  tags                         = local.tags
}

################################################################################
# Log alerts (scheduled query rules on Application Insights)
################################################################################

locals {
  alert_window_minutes = { PT5M = 5, PT10M = 10, PT15M = 15, PT30M = 30, PT45M = 45, PT1H = 60 }[var.alert_evaluation_frequency]

  # Query windows a log alert accepts, in minutes; the no-success alert looks back over the smallest
  # one that covers no_success_alert_minutes (the query itself cuts at exactly that many minutes).
  alert_durations   = { 5 = "PT5M", 10 = "PT10M", 15 = "PT15M", 30 = "PT30M", 45 = "PT45M", 60 = "PT1H", 120 = "PT2H", 180 = "PT3H", 240 = "PT4H", 300 = "PT5H", 360 = "PT6H", 1440 = "P1D", 2880 = "P2D" }
  no_success_window = var.no_success_alert_minutes == null ? null : local.alert_durations[tostring(min([for m in keys(local.alert_durations) : tonumber(m) if tonumber(m) >= max(var.no_success_alert_minutes, local.alert_window_minutes)]...))]

  # The run's one summary log line ("event": "backup_run"), whether its fields arrive as
  # customDimensions (structured logging) or as the JSON text of the message. Field names are
  # accepted in the summary's snake_case and in the metric names of the function contract.
  backup_runs_kql = <<-KQL
    let backup_runs = traces
    | where cloud_RoleName =~ "${local.function_app}"
    | where message has "backup_run" or tostring(customDimensions["event"]) == "backup_run"
    | extend m = parse_json(message), c = customDimensions
    | where coalesce(tostring(c["event"]), tostring(m["event"])) == "backup_run"
    | extend ok = tobool(coalesce(tostring(c["ok"]), tostring(m["ok"])))
    | extend gap_offsets = toreal(coalesce(tostring(c["gap_offsets"]), tostring(m["gap_offsets"]), tostring(c["GapOffsets"]), tostring(m["GapOffsets"])))
    | extend lag_records = toreal(coalesce(tostring(c["lag_records"]), tostring(m["lag_records"]), tostring(c["lag"]), tostring(m["lag"]), tostring(c["LagRecords"]), tostring(m["LagRecords"])))
    | extend rpo_seconds = toreal(coalesce(tostring(c["rpo_seconds"]), tostring(m["rpo_seconds"]), tostring(c["RpoSeconds"]), tostring(m["RpoSeconds"])))
    | extend shard = coalesce(tostring(c["shard"]), tostring(m["shard"]), "0/1");
  KQL

  alerts = {
    failure = {
      enabled     = true
      description = "A kafka-backup run failed: the function invocation failed, raised an exception, or its summary says ok=false. Some partitions were not backed up this run."
      window      = var.alert_evaluation_frequency
      query       = <<-KQL
        ${local.backup_runs_kql}
        union isfuzzy=true
          (requests | where cloud_RoleName =~ "${local.function_app}" and success == false | project timestamp),
          (exceptions | where cloud_RoleName =~ "${local.function_app}" | project timestamp),
          (backup_runs | where ok == false | project timestamp)
      KQL
      measure     = null
      aggregation = "Count"
      operator    = "GreaterThan"
      threshold   = 0
    }
    gaps = {
      enabled     = true
      description = "A kafka-backup run found offsets deleted by Kafka retention before they were backed up (gap_offsets > 0). Those records are lost for the backup; run more often or raise retention."
      window      = var.alert_evaluation_frequency
      query       = <<-KQL
        ${local.backup_runs_kql}
        backup_runs
        | where gap_offsets > 0
        | project timestamp, gap_offsets
      KQL
      measure     = "gap_offsets"
      aggregation = "Total"
      operator    = "GreaterThan"
      threshold   = 0
    }
    lag = {
      enabled     = var.lag_alert_threshold_records != null
      description = "A kafka-backup run ended with more than ${coalesce(var.lag_alert_threshold_records, 0)} records still to back up. The backup is falling behind: raise the timeout, the schedule frequency or the shard count."
      window      = var.alert_evaluation_frequency
      query       = <<-KQL
        ${local.backup_runs_kql}
        backup_runs
        | project timestamp, lag_records
      KQL
      measure     = "lag_records"
      aggregation = "Maximum"
      operator    = "GreaterThan"
      threshold   = coalesce(var.lag_alert_threshold_records, 0)
    }
    # The write policy writes a partition at the latest when its oldest unbacked record is
    # backup_max_lag_seconds old, so a run reporting twice that has not kept the promised RPO.
    rpo = {
      enabled     = true
      description = "A kafka-backup run ended with a record more than ${2 * var.backup_max_lag_seconds} seconds old (twice backup_max_lag_seconds, the write policy's RPO) still not backed up. Runs fail, stop at their deadline with work left, or come too rarely: check the failure alert, then raise the timeout, the schedule frequency or the instance memory."
      window      = var.alert_evaluation_frequency
      query       = <<-KQL
        ${local.backup_runs_kql}
        backup_runs
        | project timestamp, rpo_seconds
      KQL
      measure     = "rpo_seconds"
      aggregation = "Maximum"
      operator    = "GreaterThan"
      threshold   = 2 * var.backup_max_lag_seconds
    }
    no_success = {
      enabled     = var.no_success_alert_minutes != null
      description = "No kafka-backup run has succeeded in the last ${coalesce(var.no_success_alert_minutes, 0)} minutes: the timer is not firing, the app does not start, or every run fails."
      window      = coalesce(local.no_success_window, "PT1H")
      query       = <<-KQL
        ${local.backup_runs_kql}
        backup_runs
        | where ok == true and timestamp > ago(${coalesce(var.no_success_alert_minutes, 0)}m)
        | project timestamp
      KQL
      measure     = null
      aggregation = "Count"
      operator    = "LessThan"
      threshold   = 1
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "this" {
  for_each = { for k, v in local.alerts : k => v if var.create_alerts && v.enabled }

  name                 = "${var.name}-${replace(each.key, "_", "-")}"
  display_name         = "kafka-backup ${var.name}: ${replace(each.key, "_", " ")}"
  description          = each.value.description
  resource_group_name  = var.resource_group_name
  location             = var.location
  scopes               = [azurerm_application_insights.this.id]
  severity             = var.alert_severity
  evaluation_frequency = var.alert_evaluation_frequency
  window_duration      = each.value.window
  enabled              = true

  # A failure or a gap is an event: notify once per occurrence and let it resolve by itself.
  auto_mitigation_enabled = true

  criteria {
    query                   = each.value.query
    time_aggregation_method = each.value.aggregation
    operator                = each.value.operator
    threshold               = each.value.threshold
    metric_measure_column   = each.value.measure

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  dynamic "action" {
    for_each = length(var.alert_action_group_ids) > 0 ? [1] : []
    content {
      action_groups = var.alert_action_group_ids
      custom_properties = {
        "kafka-backup" = var.name
        "alert"        = each.key
      }
    }
  }

  tags = local.tags
}
