################################################################################
# General
################################################################################

variable "name" {
  description = "Base name of every resource (function, roles, schedule group, queue, alarms); the bucket gets it as a prefix. Lowercase letters, digits and hyphens, at most 32 characters so that derived names stay within AWS limits."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.name))
    error_message = "name must be 1-32 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

################################################################################
# Storage (S3 bucket and its KMS key)
################################################################################

variable "bucket_name" {
  description = "Exact name of the backup bucket. When null, AWS generates a unique name starting with \"<name>-\"."
  type        = string
  default     = null
}

variable "storage_prefix" {
  description = "Key prefix under which all backups live. The function's S3 permissions are limited to it, so it must not be empty."
  type        = string
  default     = "kafka-backup"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.storage_prefix))
    error_message = "storage_prefix must be non-empty, without leading, trailing or doubled slashes, and use only S3-safe characters."
  }
}

variable "bucket_force_destroy" {
  description = "Allow `destroy` to delete a bucket that still holds backups. Leave false outside of tests."
  type        = bool
  default     = false
}

variable "create_kms_key" {
  description = "Create a customer managed KMS key (with rotation) for the bucket and the log group. Set false and give kms_key_arn to use your own key."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "ARN of an existing KMS key for the bucket's SSE-KMS when create_kms_key is false. Its key policy must let this account's IAM policies grant use of it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:[^:]+:kms:[^:]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period, in days, before the module-created KMS key is deleted after a destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be between 7 and 30."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which S3 aborts multipart uploads that were never completed (a run killed mid-upload leaves parts that are billed until then)."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed (with their delete markers). Null keeps old versions forever."
  type        = number
  default     = null

  validation {
    condition     = var.noncurrent_version_expiration_days == null || try(var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days, false)
    error_message = "noncurrent_version_expiration_days must be null or a whole number of days, at least 1."
  }
}

variable "object_lock_enabled" {
  description = "Create the bucket with S3 Object Lock and a default retention, so that backups cannot be deleted or overwritten before it ends. Only possible when the bucket is created; uploads then carry a SHA-256 checksum."
  type        = bool
  default     = false
}

variable "object_lock_mode" {
  description = "Default retention mode: GOVERNANCE (users with s3:BypassGovernanceRetention can still delete) or COMPLIANCE (nobody can, not even the root user)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_days" {
  description = "Default retention period, in days, of every object version written to the bucket."
  type        = number
  default     = 30

  validation {
    condition     = var.object_lock_days >= 1 && floor(var.object_lock_days) == var.object_lock_days
    error_message = "object_lock_days must be a whole number of days, at least 1."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives S3 server access logs for the backup bucket. Null turns access logging off."
  type        = string
  default     = null
}

variable "access_log_prefix" {
  description = "Key prefix of the access logs in access_log_bucket."
  type        = string
  default     = "s3-access/"
}

################################################################################
# Kafka
################################################################################

variable "bootstrap_servers" {
  description = "Kafka bootstrap servers as HOST:PORT (for MSK: the brokers of the listener that matches sasl_mechanism, e.g. port 9098 for IAM, 9096 for SCRAM)."
  type        = list(string)

  validation {
    condition     = length(var.bootstrap_servers) > 0 && alltrue([for s in var.bootstrap_servers : can(regex("^([^\\s:,]+|\\[[0-9A-Fa-f:]+\\]):[0-9]{1,5}$", s))])
    error_message = "bootstrap_servers must be a non-empty list of HOST:PORT entries."
  }
}

variable "security_protocol" {
  description = "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  type        = string
  default     = "SSL"

  validation {
    condition     = contains(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], var.security_protocol)
    error_message = "security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  }
}

variable "sasl_mechanism" {
  description = "SASL mechanism when security_protocol is SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (need sasl_username and sasl_password_secret_arn) or AWS_MSK_IAM (needs msk_cluster_arn)."
  type        = string
  default     = null

  validation {
    condition     = var.sasl_mechanism == null || contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM"], coalesce(var.sasl_mechanism, "-"))
    error_message = "sasl_mechanism must be null, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM."
  }
}

variable "sasl_username" {
  description = "SASL username (PLAIN and SCRAM)."
  type        = string
  default     = null
}

variable "sasl_password_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the SASL password. The function gets it as a secretref, reads it at run time, and may read only this secret."
  type        = string
  default     = null

  validation {
    condition     = var.sasl_password_secret_arn == null || can(regex("^arn:[^:]+:secretsmanager:[^:]+:[0-9]{12}:secret:.+$", var.sasl_password_secret_arn))
    error_message = "sasl_password_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "sasl_password_secret_json_key" {
  description = "When the secret is a JSON object (as MSK SCRAM secrets are: {\"username\": ..., \"password\": ...}), the key that holds the password. Null uses the whole secret string."
  type        = string
  default     = null
}

variable "sasl_password_secret_kms_key_arn" {
  description = "ARN of the customer managed KMS key that encrypts the SASL secret; the function then may decrypt with it through Secrets Manager only. Null when the secret uses the AWS managed key."
  type        = string
  default     = null

  validation {
    condition     = var.sasl_password_secret_kms_key_arn == null || can(regex("^arn:[^:]+:kms:[^:]+:[0-9]{12}:key/.+$", var.sasl_password_secret_kms_key_arn))
    error_message = "sasl_password_secret_kms_key_arn must be a KMS key ARN."
  }
}

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster when it uses IAM access control (sasl_mechanism AWS_MSK_IAM). The function then gets kafka-cluster permissions on this cluster, its backed-up topics and its consumer groups only."
  type        = string
  default     = null

  validation {
    condition     = var.msk_cluster_arn == null || can(regex("^arn:[^:]+:kafka:[^:]+:[0-9]{12}:cluster/[^/]+/[^/]+$", var.msk_cluster_arn))
    error_message = "msk_cluster_arn must look like arn:PARTITION:kafka:REGION:ACCOUNT:cluster/NAME/UUID."
  }
}

variable "msk_topic_iam_patterns" {
  description = "IAM wildcard patterns (* and ?) for the topics that topic_patterns select, e.g. [\"orders-*\"]. IAM cannot evaluate regular expressions, so these are required with topic_patterns on an IAM-authenticated MSK cluster; [\"*\"] allows every topic of the cluster."
  type        = list(string)
  default     = []
}

variable "msk_group_iam_patterns" {
  description = "IAM wildcard patterns of the consumer groups whose committed offsets are snapshot with each backup (DescribeGroup only)."
  type        = list(string)
  default     = ["*"]
}

################################################################################
# Backup
################################################################################

variable "topics" {
  description = "Exact names of the topics to back up."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.topics : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "topics must be valid Kafka topic names ([A-Za-z0-9._-], at most 249 characters)."
  }
}

variable "topic_patterns" {
  description = "Regular expressions (full match) selecting further topics by name. Passed comma-separated to the function, so a pattern cannot contain a comma."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.topic_patterns : length(p) > 0 && !strcontains(p, ",")])
    error_message = "topic_patterns must be non-empty and contain no comma (the list is passed comma-separated)."
  }
}

variable "shards" {
  description = "Number of shards: one schedule per shard, each invocation backing up its stable share of the partitions. Raise it when one invocation cannot keep up within the function timeout."
  type        = number
  default     = 1

  validation {
    condition     = var.shards >= 1 && var.shards <= 100 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number between 1 and 100."
  }
}

variable "segment_min_bytes" {
  description = "Write policy (backup.segment_min_bytes): a partition is written only when about this many new batch bytes wait, or its oldest unbacked record is max_lag_seconds old. Saves the per-run segment and commit PUTs of partitions that only trickle. 0 writes every partition on every run. The default (8 MiB) is the cost model's."
  type        = number
  default     = 8388608

  validation {
    condition     = var.segment_min_bytes >= 0 && var.segment_min_bytes <= 1073741824 && floor(var.segment_min_bytes) == var.segment_min_bytes
    error_message = "segment_min_bytes must be a whole number of bytes between 0 (write every run) and 1073741824 (1 GiB)."
  }
}

variable "max_lag_seconds" {
  description = "Recovery-point objective of the write policy (backup.max_lag_seconds): a partition whose oldest record not yet backed up is this many seconds old is written whatever segment_min_bytes says. The RPO alarm fires at twice this."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_lag_seconds > 0
    error_message = "max_lag_seconds must be greater than 0."
  }
}

variable "deadline_margin_seconds" {
  description = "Seconds before the Lambda timeout at which a run stops taking new work, so that it commits what it has and returns before the platform kills it."
  type        = number
  default     = 30

  validation {
    condition     = var.deadline_margin_seconds >= 5
    error_message = "deadline_margin_seconds must be at least 5."
  }
}

variable "log_level" {
  description = "Application log level of the function (also Lambda's application log-level filter)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARN or ERROR."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the run metrics (Records, LagRecords, GapOffsets, ...) that the function emits; the alarms watch it."
  type        = string
  default     = "KafkaBackup"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 characters of [A-Za-z0-9._/#:-] and must not start with AWS/."
  }
}

variable "environment_variables" {
  description = "Extra environment variables for the function, e.g. KAFKA_BACKUP_BACKUP__MAX_SECONDS. They override the ones the module derives from the other inputs. Never put a secret here: use sasl_password_secret_arn."
  type        = map(string)
  default     = {}
}

################################################################################
# Function
################################################################################

variable "package_path" {
  description = "Path of the Lambda deployment zip built by functions/aws/build.py (handler module at its root). Its SHA-256 decides when the code is redeployed."
  type        = string
}

variable "handler" {
  description = "Function entry point, module.function inside the package."
  type        = string
  default     = "handler.handler"
}

variable "runtime" {
  description = "Lambda runtime identifier; the package's compiled wheels must match it."
  type        = string
  default     = "python3.11"
}

variable "architecture" {
  description = "Instruction set of the function: x86_64 or arm64. The package's compiled wheels must match it."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Memory of the function in MiB (CPU grows with it). Each run holds at most one segment plus one fetch in memory."
  type        = number
  default     = 1024

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MiB."
  }
}

variable "timeout" {
  description = "Function timeout in seconds. A run stops deadline_margin_seconds before it and the next firing resumes."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout >= 60 && var.timeout <= 900
    error_message = "timeout must be between 60 and 900 seconds."
  }
}

variable "reserved_concurrent_executions" {
  description = "Concurrency reserved for the function (e.g. equal to shards). Null leaves it unreserved (-1): reserving takes capacity from the account's pool."
  type        = number
  default     = null
}

variable "maximum_retry_attempts" {
  description = "Times Lambda retries a failed asynchronous invocation (0-2). 0 by default: the next scheduled firing resumes where the failed run stopped."
  type        = number
  default     = 0

  validation {
    condition     = contains([0, 1, 2], var.maximum_retry_attempts)
    error_message = "maximum_retry_attempts must be 0, 1 or 2."
  }
}

variable "vpc_subnet_ids" {
  description = "Subnets to attach the function to (needed for a private cluster such as MSK). The subnets need a route to S3 and Secrets Manager (VPC endpoints or NAT). Empty runs outside any VPC."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  description = "Security groups of the function when vpc_subnet_ids is set; they must allow egress to the brokers and to HTTPS endpoints."
  type        = list(string)
  default     = []
}

variable "enable_tracing" {
  description = "Turn on AWS X-Ray active tracing (and grant the function X-Ray write access)."
  type        = bool
  default     = false
}

variable "code_signing_config_arn" {
  description = "ARN of a Lambda code signing configuration that the package must satisfy. Null deploys unsigned code."
  type        = string
  default     = null
}

variable "environment_kms_key_arn" {
  description = "KMS key that encrypts the function's environment variables at rest. Null uses the AWS managed key (the environment holds no secret values: the password is a secret reference)."
  type        = string
  default     = null
}

################################################################################
# Schedule
################################################################################

variable "schedule_expression" {
  description = "When every shard's schedule fires: rate(...) or cron(...) in EventBridge Scheduler syntax."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be rate(...) or cron(...)."
  }
}

variable "schedule_expression_timezone" {
  description = "IANA time zone in which cron expressions are evaluated."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the schedules fire. False keeps them, paused."
  type        = bool
  default     = true
}

variable "schedule_maximum_retry_attempts" {
  description = "Times EventBridge Scheduler retries delivering an invocation that Lambda rejected (throttling, service errors) before sending it to the dead-letter queue."
  type        = number
  default     = 3

  validation {
    condition     = var.schedule_maximum_retry_attempts >= 0 && var.schedule_maximum_retry_attempts <= 185
    error_message = "schedule_maximum_retry_attempts must be between 0 and 185."
  }
}

variable "schedule_maximum_event_age_in_seconds" {
  description = "How long, in seconds, an undelivered invocation (and a failed asynchronous one) is kept retrying before it goes to the dead-letter queue. Keep it below the schedule interval."
  type        = number
  default     = 3600

  validation {
    condition     = var.schedule_maximum_event_age_in_seconds >= 60 && var.schedule_maximum_event_age_in_seconds <= 21600
    error_message = "schedule_maximum_event_age_in_seconds must be between 60 and 21600 (the lower of the Scheduler and Lambda limits)."
  }
}

variable "dlq_message_retention_seconds" {
  description = "How long, in seconds, the dead-letter queue keeps a failed invocation's payload."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600
    error_message = "dlq_message_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

################################################################################
# Logs
################################################################################

variable "log_retention_in_days" {
  description = "Days the function's CloudWatch log group keeps the run logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "log_group_kms_key_arn" {
  description = "KMS key that encrypts the log group. Null uses the module-created key when create_kms_key is true (its key policy admits CloudWatch Logs for this log group only), else no customer managed key."
  type        = string
  default     = null

  validation {
    condition     = var.log_group_kms_key_arn == null || can(regex("^arn:[^:]+:kms:[^:]+:[0-9]{12}:key/.+$", var.log_group_kms_key_arn))
    error_message = "log_group_kms_key_arn must be a KMS key ARN."
  }
}

################################################################################
# Alarms
################################################################################

variable "create_alarms" {
  description = "Create the CloudWatch alarms (errors, throttles, gaps, lag, RPO, no successful run, dead letters)."
  type        = bool
  default     = true
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic notified when an alarm fires and when it clears. Null creates the alarms without actions."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:[^:]+:sns:[^:]+:[0-9]{12}:.+$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be an SNS topic ARN."
  }
}

variable "alarm_period_seconds" {
  description = "Period, in seconds, over which the errors, throttles, gap, lag and RPO alarms evaluate their metric."
  type        = number
  default     = 300

  validation {
    condition     = var.alarm_period_seconds >= 60 && var.alarm_period_seconds % 60 == 0
    error_message = "alarm_period_seconds must be a multiple of 60, at least 60."
  }
}

variable "lag_alarm_threshold_records" {
  description = "Records a shard may still be behind the end of its topics after a run before the lag alarm fires."
  type        = number
  default     = 1000000
}

variable "lag_alarm_evaluation_periods" {
  description = "Consecutive periods the lag must stay above the threshold before the alarm fires (a single burst is normal)."
  type        = number
  default     = 3

  validation {
    condition     = var.lag_alarm_evaluation_periods >= 1
    error_message = "lag_alarm_evaluation_periods must be at least 1."
  }
}

variable "no_success_alarm_period_seconds" {
  description = "Window, in seconds, in which at least one invocation must succeed; otherwise (including when nothing ran at all) the no-successful-run alarm fires. Make it longer than the schedule interval."
  type        = number
  default     = 10800

  validation {
    condition     = var.no_success_alarm_period_seconds >= 300 && var.no_success_alarm_period_seconds <= 86400 && var.no_success_alarm_period_seconds % 60 == 0
    error_message = "no_success_alarm_period_seconds must be a multiple of 60 between 300 and 86400."
  }
}
