################################################################################
# KMS key for the bucket (and the log group)
################################################################################

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a key policy: its Resource "*" is this key alone, and kms:* for the account root is the AWS default key policy that defers to IAM (the role policies in iam.tf).
  #checkov:skip=CKV_AWS_111:This is a key policy: its Resource "*" is this key alone; write access goes to the account root (deferring to IAM) and to CloudWatch Logs for one log group.
  #checkov:skip=CKV_AWS_356:This is a key policy, where Resource "*" means this key; a key policy cannot name the key's own ARN before the key exists.
  count = var.create_kms_key ? 1 : 0

  # The AWS default key policy: the account's IAM policies decide who may use the key, so the
  # function's own role policy (iam.tf) is what grants it. In a key policy "*" means this key.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsForThisLogGroup"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [local.log_group_arn]
    }
  }
}

resource "aws_kms_key" "this" {
  count = var.create_kms_key ? 1 : 0

  description             = "kafka-backup ${var.name}: backup bucket and function logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = local.tags
}

resource "aws_kms_alias" "this" {
  count = var.create_kms_key ? 1 : 0

  name          = "alias/kafka-backup/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}
