################################################################################
# Execution role of the function: one inline policy per concern, exact resources
################################################################################

data "aws_iam_policy_document" "function_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  name                 = "${var.name}-function"
  description          = "kafka-backup ${var.name}: execution role of the backup function"
  assume_role_policy   = data.aws_iam_policy_document.function_assume.json
  max_session_duration = 3600

  tags = local.tags
}

# Logs: write to the function's own log group only (the module creates the group, so no CreateLogGroup).
data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.this.arn, "${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

resource "aws_iam_role_policy" "logs" {
  name   = "logs"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.logs.json
}

# S3: list, read, write and delete under the backup prefix only.
data "aws_iam_policy_document" "s3" {
  statement {
    sid       = "ListBackupPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.storage_prefix, "${var.storage_prefix}/*"]
    }
  }

  statement {
    sid = "ReadWriteBackupObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.s3_prefix_arn]
  }
}

resource "aws_iam_role_policy" "s3" {
  name   = "s3"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.s3.json
}

# KMS: the data keys S3 needs for SSE-KMS (GenerateDataKey to write, Decrypt to read and to
# complete multipart uploads), on the bucket's key, through S3, for this bucket only.
data "aws_iam_policy_document" "kms_s3" {
  statement {
    sid       = "BucketKeyThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }

    # With S3 Bucket Keys the encryption context is the bucket ARN; without, the object ARN.
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [local.bucket_arn, local.s3_prefix_arn]
    }
  }
}

resource "aws_iam_role_policy" "kms_s3" {
  name   = "kms-s3"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.kms_s3.json
}

# Dead letters: Lambda sends a failed asynchronous invocation's event to the queue with this role.
data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "SendToOwnDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

resource "aws_iam_role_policy" "dlq" {
  name   = "dead-letter-queue"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.dlq.json
}

# Secrets Manager: the one SASL password secret (and its key, through Secrets Manager only).
data "aws_iam_policy_document" "secret" {
  count = var.sasl_password_secret_arn == null ? 0 : 1

  statement {
    sid       = "ReadSaslSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.sasl_password_secret_arn]
  }

  dynamic "statement" {
    for_each = var.sasl_password_secret_kms_key_arn == null ? [] : [var.sasl_password_secret_kms_key_arn]
    content {
      sid       = "DecryptSaslSecret"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

resource "aws_iam_role_policy" "secret" {
  count = var.sasl_password_secret_arn == null ? 0 : 1

  name   = "sasl-secret"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.secret[0].json
}

# MSK IAM access control: connect to the one cluster, read the backed-up topics and their
# configuration, and read (never change) consumer-group offsets for the offset snapshot.
locals {
  msk_topic_arn_prefix = var.msk_cluster_arn == null ? null : replace(var.msk_cluster_arn, ":cluster/", ":topic/")
  msk_group_arn_prefix = var.msk_cluster_arn == null ? null : replace(var.msk_cluster_arn, ":cluster/", ":group/")
  msk_topic_arns = var.msk_cluster_arn == null ? [] : [
    for t in distinct(concat(var.topics, var.msk_topic_iam_patterns)) : "${local.msk_topic_arn_prefix}/${t}"
  ]
  msk_group_arns = var.msk_cluster_arn == null ? [] : [
    for g in var.msk_group_iam_patterns : "${local.msk_group_arn_prefix}/${g}"
  ]
}

data "aws_iam_policy_document" "msk" {
  count = var.msk_cluster_arn == null ? 0 : 1

  statement {
    sid       = "ConnectToCluster"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [var.msk_cluster_arn]
  }

  statement {
    sid = "ReadBackedUpTopics"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:ReadData",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
    ]
    resources = local.msk_topic_arns
  }

  dynamic "statement" {
    for_each = length(local.msk_group_arns) > 0 ? [local.msk_group_arns] : []
    content {
      sid       = "DescribeConsumerGroups"
      actions   = ["kafka-cluster:DescribeGroup"]
      resources = statement.value
    }
  }
}

resource "aws_iam_role_policy" "msk" {
  count = var.msk_cluster_arn == null ? 0 : 1

  name   = "msk-iam"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.msk[0].json
}

# VPC: the network interfaces Lambda creates in the given subnets with the given security groups.
# The Describe calls support no resource-level permissions, hence "*" for those two alone.
data "aws_iam_policy_document" "vpc" {
  count = length(var.vpc_subnet_ids) > 0 ? 1 : 0

  statement {
    sid     = "CreateInterfacesInGivenSubnets"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      [for s in var.vpc_subnet_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${s}"],
      [for g in var.vpc_security_group_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/${g}"],
    )
  }

  statement {
    sid = "ManageOwnInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
  }

  statement {
    sid       = "DescribeNetwork"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "vpc" {
  count = length(var.vpc_subnet_ids) > 0 ? 1 : 0

  name   = "vpc"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.vpc[0].json
}

# X-Ray: trace upload; these two actions support no resource-level permissions.
data "aws_iam_policy_document" "xray" {
  count = var.enable_tracing ? 1 : 0

  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "xray" {
  count = var.enable_tracing ? 1 : 0

  name   = "xray"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.xray[0].json
}
