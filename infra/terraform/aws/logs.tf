################################################################################
# Log group of the function (JSON logs: one structured summary line per run)
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_in_days
  # The module-created key's policy admits CloudWatch Logs for this log group only (kms.tf).
  kms_key_id = local.log_group_kms_key_arn

  tags = local.tags
}
