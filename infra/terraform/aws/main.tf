data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id

  function_name  = var.name
  log_group_name = "/aws/lambda/${var.name}"
  # Built rather than read from the log group so that the KMS key policy (which the log group
  # needs first) can name it without a dependency cycle.
  log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"

  kms_key_arn           = var.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn
  log_group_kms_key_arn = var.log_group_kms_key_arn != null ? var.log_group_kms_key_arn : (var.create_kms_key ? aws_kms_key.this[0].arn : null)

  bucket_arn    = aws_s3_bucket.this.arn
  s3_prefix_arn = "${aws_s3_bucket.this.arn}/${var.storage_prefix}/*"

  # Object Lock buckets with a default retention reject uploads that carry no checksum;
  # obstore adds x-amz-checksum-sha256 when the store option checksum_algorithm is set.
  storage_url = "s3://${aws_s3_bucket.this.id}/${var.storage_prefix}${var.object_lock_enabled ? "?checksum_algorithm=sha256" : ""}"

  secret_ref = var.sasl_password_secret_arn == null ? null : format(
    "secretref:aws-secretsmanager:%s%s",
    var.sasl_password_secret_arn,
    var.sasl_password_secret_json_key == null ? "" : "#${var.sasl_password_secret_json_key}",
  )

  # The function contract: KAFKA_BACKUP_ + settings path with "__" between levels.
  environment = merge(
    {
      KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS = join(",", var.bootstrap_servers)
      KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL = var.security_protocol
      KAFKA_BACKUP_STORAGE__URL             = local.storage_url
      KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS  = tostring(var.deadline_margin_seconds)
      KAFKA_BACKUP_LOG_LEVEL                = var.log_level
      POWERTOOLS_SERVICE_NAME               = local.function_name
      POWERTOOLS_METRICS_NAMESPACE          = var.metrics_namespace
      POWERTOOLS_TRACE_DISABLED             = var.enable_tracing ? "false" : "true"
    },
    # The write policy (docs/configuration.md §4.5): always set, so that a scheduled deployment
    # writes a trickling partition once per max_lag_seconds rather than on every run.
    {
      KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES = tostring(var.segment_min_bytes)
      KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS   = tostring(var.max_lag_seconds)
    },
    length(var.topics) > 0 ? { KAFKA_BACKUP_BACKUP__TOPICS = join(",", var.topics) } : {},
    length(var.topic_patterns) > 0 ? { KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS = join(",", var.topic_patterns) } : {},
    var.sasl_mechanism != null ? { KAFKA_BACKUP_KAFKA__SASL__MECHANISM = var.sasl_mechanism } : {},
    var.sasl_username != null ? { KAFKA_BACKUP_KAFKA__SASL__USERNAME = var.sasl_username } : {},
    local.secret_ref != null ? { KAFKA_BACKUP_KAFKA__SASL__PASSWORD = local.secret_ref } : {},
    var.environment_variables,
  )

  tags = merge(var.tags, { "kafka-backup:name" = var.name })
}

################################################################################
# Lambda function
################################################################################

resource "aws_lambda_function" "this" {
  function_name = local.function_name
  description   = "kafka-backup ${var.name}: scheduled backup of Kafka topics into S3"
  role          = aws_iam_role.function.arn

  filename         = var.package_path
  source_code_hash = filebase64sha256(var.package_path)
  handler          = var.handler
  runtime          = var.runtime
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout

  reserved_concurrent_executions = coalesce(var.reserved_concurrent_executions, -1)
  code_signing_config_arn        = var.code_signing_config_arn
  kms_key_arn                    = var.environment_kms_key_arn

  environment {
    variables = local.environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.this.name
    application_log_level = var.log_level
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = var.enable_tracing ? "Active" : "PassThrough"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  dynamic "vpc_config" {
    for_each = length(var.vpc_subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = var.vpc_security_group_ids
    }
  }

  tags = local.tags

  # The role's policies must exist before the first invocation (and, in a VPC, before Lambda
  # creates the network interfaces with the role's permissions).
  depends_on = [
    aws_iam_role_policy.logs,
    aws_iam_role_policy.dlq,
    aws_iam_role_policy.vpc,
  ]

  lifecycle {
    precondition {
      condition     = length(var.topics) + length(var.topic_patterns) > 0
      error_message = "Give at least one of topics or topic_patterns."
    }
    precondition {
      condition     = startswith(var.security_protocol, "SASL") == (var.sasl_mechanism != null)
      error_message = "sasl_mechanism must be set exactly when security_protocol is SASL_PLAINTEXT or SASL_SSL."
    }
    precondition {
      condition     = !contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], coalesce(var.sasl_mechanism, "-")) || (var.sasl_username != null && var.sasl_password_secret_arn != null)
      error_message = "sasl_mechanism PLAIN/SCRAM needs sasl_username and sasl_password_secret_arn."
    }
    precondition {
      condition     = coalesce(var.sasl_mechanism, "-") != "AWS_MSK_IAM" || (var.msk_cluster_arn != null && var.security_protocol == "SASL_SSL")
      error_message = "sasl_mechanism AWS_MSK_IAM needs msk_cluster_arn and security_protocol SASL_SSL."
    }
    precondition {
      condition     = var.msk_cluster_arn == null || length(var.topic_patterns) == 0 || length(var.msk_topic_iam_patterns) > 0
      error_message = "topic_patterns are regular expressions that IAM cannot evaluate: give the matching IAM wildcards in msk_topic_iam_patterns."
    }
    precondition {
      condition     = (length(var.vpc_subnet_ids) > 0) == (length(var.vpc_security_group_ids) > 0)
      error_message = "vpc_subnet_ids and vpc_security_group_ids go together: give both or neither."
    }
  }
}

resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = var.schedule_maximum_event_age_in_seconds
}
