variable "name" {
  description = "Base name of the resources."
  type        = string
  default     = "kafka-backup"
}

variable "location" {
  description = "Azure region, e.g. \"westeurope\"."
  type        = string
}

variable "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers (HOST:PORT), reached with SASL_SSL and SCRAM-SHA-512."
  type        = list(string)
}

variable "kafka_sasl_username" {
  description = "SCRAM username."
  type        = string
}

variable "kafka_sasl_password" {
  description = "SCRAM password, written once into the key vault (never stored in state). Set it with TF_VAR_kafka_sasl_password."
  type        = string
  sensitive   = true
  ephemeral   = true
}
