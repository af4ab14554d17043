variable "name" {
  description = "Base name of the deployment; the second (SCRAM) backup gets \"-legacy\" appended."
  type        = string
  default     = "orders-backup"
}

variable "package_path" {
  description = "Path of the Lambda zip built by `python functions/aws/build.py`."
  type        = string
}

variable "msk_cluster_name" {
  description = "Name of the MSK cluster (IAM access control enabled) to back up."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the MSK cluster. It needs an S3 gateway endpoint and interface endpoints (or a NAT gateway) for the AWS APIs the function calls."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of that VPC for the function."
  type        = list(string)
}

variable "legacy_bootstrap_servers" {
  description = "Bootstrap servers of the second, self-managed cluster (SASL_SSL with SCRAM-SHA-512)."
  type        = list(string)
}

variable "legacy_sasl_username" {
  description = "SCRAM user of the second cluster; its password goes into the secret this example creates."
  type        = string
  default     = "kafka-backup"
}
