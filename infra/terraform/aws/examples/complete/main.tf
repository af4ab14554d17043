# Two backups that share one alarm topic:
# - "orders": an MSK cluster with IAM access control, reached from inside its VPC, four shards,
#   an Object Lock bucket, X-Ray tracing;
# - "legacy": a self-managed cluster with SASL/SCRAM, its password in Secrets Manager under a
#   customer managed key.
# After `apply`, put the SCRAM password into the secret (never into Terraform state):
#   aws secretsmanager put-secret-value --secret-id <legacy_secret_arn> \
#     --secret-string '{"username":"kafka-backup","password":"..."}'

# The region and credentials come from the environment (AWS_REGION, AWS_PROFILE, ...).
provider "aws" {}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_msk_cluster" "orders" {
  cluster_name = var.msk_cluster_name
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_ec2_managed_prefix_list" "s3" {
  name = "${data.aws_partition.current.reverse_dns_prefix}.${data.aws_region.current.region}.s3"
}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

################################################################################
# Network: the function may reach the brokers' IAM listener and HTTPS endpoints only
################################################################################

resource "aws_security_group" "backup" {
  name        = "${var.name}-function"
  description = "kafka-backup ${var.name}: egress to the MSK IAM listener and to AWS endpoints"
  vpc_id      = data.aws_vpc.this.id
}

resource "aws_vpc_security_group_egress_rule" "msk_iam" {
  security_group_id = aws_security_group.backup.id
  description       = "MSK brokers, IAM listener"
  ip_protocol       = "tcp"
  from_port         = 9098
  to_port           = 9098
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "endpoints" {
  security_group_id = aws_security_group.backup.id
  description       = "Interface endpoints in the VPC (Secrets Manager, X-Ray)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "s3" {
  security_group_id = aws_security_group.backup.id
  description       = "S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = data.aws_ec2_managed_prefix_list.s3.id
}

################################################################################
# Alarm topic (encrypted with a key CloudWatch may use)
################################################################################

data "aws_iam_policy_document" "alarms_key" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key alone; kms:* for the account root is the AWS default key policy that defers to IAM.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key alone; write access goes to the account root (deferring to IAM) and CloudWatch alarms for this account.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" means this key, whose ARN does not exist before the key does.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "alarms" {
  description         = "kafka-backup ${var.name}: alarm topic"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.alarms_key.json
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

################################################################################
# Backup 1: MSK with IAM access control, in the VPC, four shards, Object Lock
################################################################################

module "orders" {
  source = "../.."

  name         = var.name
  package_path = var.package_path

  bootstrap_servers = split(",", data.aws_msk_cluster.orders.bootstrap_brokers_sasl_iam)
  security_protocol = "SASL_SSL"
  sasl_mechanism    = "AWS_MSK_IAM"
  msk_cluster_arn   = data.aws_msk_cluster.orders.arn

  topics                 = ["orders", "payments"]
  topic_patterns         = ["audit\\..*"]
  msk_topic_iam_patterns = ["audit.*"]
  msk_group_iam_patterns = ["orders-*", "payments-*"]

  shards                          = 4
  reserved_concurrent_executions  = 4
  schedule_expression             = "rate(15 minutes)"
  timeout                         = 600
  memory_size                     = 2048
  no_success_alarm_period_seconds = 3600

  vpc_subnet_ids         = var.subnet_ids
  vpc_security_group_ids = [aws_security_group.backup.id]

  object_lock_enabled                = true
  object_lock_mode                   = "COMPLIANCE"
  object_lock_days                   = 35
  noncurrent_version_expiration_days = 60

  enable_tracing      = true
  alarm_sns_topic_arn = aws_sns_topic.alarms.arn

  tags = { team = "payments" }
}

################################################################################
# Backup 2: a self-managed cluster with SASL/SCRAM, password in Secrets Manager
################################################################################

data "aws_iam_policy_document" "secret_key" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key alone; kms:* for the account root is the AWS default key policy that defers to IAM.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key alone; write access goes to the account root (deferring to IAM) and nobody else.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" means this key, whose ARN does not exist before the key does.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
}

resource "aws_kms_key" "secret" {
  description         = "kafka-backup ${var.name}-legacy: SCRAM secret"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.secret_key.json
}

resource "aws_secretsmanager_secret" "legacy_scram" {
  #checkov:skip=CKV2_AWS_57:A SCRAM password is rotated together with the broker's user (kafka-configs --alter), which a Secrets Manager rotation function would have to do on a cluster this example does not manage.
  name_prefix = "${var.name}-legacy-scram-"
  description = "SCRAM-SHA-512 credentials of the kafka-backup user on the legacy cluster ({\"username\", \"password\"})"
  kms_key_id  = aws_kms_key.secret.arn
}

module "legacy" {
  source = "../.."

  name         = "${var.name}-legacy"
  package_path = var.package_path

  bootstrap_servers                = var.legacy_bootstrap_servers
  security_protocol                = "SASL_SSL"
  sasl_mechanism                   = "SCRAM-SHA-512"
  sasl_username                    = var.legacy_sasl_username
  sasl_password_secret_arn         = aws_secretsmanager_secret.legacy_scram.arn
  sasl_password_secret_json_key    = "password"
  sasl_password_secret_kms_key_arn = aws_kms_key.secret.arn

  topic_patterns = ["legacy\\..*"]

  schedule_expression = "cron(0 */6 * * ? *)"
  alarm_sns_topic_arn = aws_sns_topic.alarms.arn
  # Every six hours: a window one run longer than the interval.
  no_success_alarm_period_seconds = 43200
}
