variable "project_id" {
  description = "Project to deploy into (also the Managed Kafka cluster's project)."
  type        = string
}

variable "region" {
  description = "Region of the function, bucket, schedule and Managed Kafka cluster."
  type        = string
}

variable "function_source_zip" {
  description = "Path of the packaged function source (functions/gcp with the engine), a zip."
  type        = string
}

variable "build_service_account_email" {
  description = "Dedicated Cloud Build service account for the function build (null: project default)."
  type        = string
  default     = null
}

variable "kafka_cluster" {
  description = "Managed Service for Apache Kafka cluster name (in project_id and region)."
  type        = string
}

variable "kafka_token_provider" {
  description = "module:callable in the deployed function source that returns the OAUTHBEARER token provider for Managed Kafka (functions/gcp ships one built on the function's Application Default Credentials)."
  type        = string
  default     = "gcp_identity:ManagedKafkaTokenProvider"
}

variable "network" {
  description = "VPC network that holds the Kafka cluster's subnet (name or self link)."
  type        = string
}

variable "connector_cidr" {
  description = "Unused /28 range in that network for the Serverless VPC Access connector."
  type        = string
  default     = "10.8.0.0/28"
}

variable "kms_key_name" {
  description = "CMEK for the bucket (projects/P/locations/L/keyRings/R/cryptoKeys/K), in the bucket's region."
  type        = string
}

variable "alert_email" {
  description = "Address the alert policies notify."
  type        = string
}
