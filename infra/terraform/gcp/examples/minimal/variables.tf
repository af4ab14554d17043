variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the function, bucket and schedule."
  type        = string
}

variable "function_source_zip" {
  description = "Path of the packaged function source (functions/gcp with the engine), a zip."
  type        = string
}

variable "kafka_bootstrap_servers" {
  description = "Bootstrap brokers, HOST:PORT."
  type        = list(string)
}

variable "kafka_username" {
  description = "SCRAM user of the backup."
  type        = string
}

variable "topics" {
  description = "Topics to back up."
  type        = list(string)
}
