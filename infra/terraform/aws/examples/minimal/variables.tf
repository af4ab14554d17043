variable "name" {
  description = "Base name of the deployment."
  type        = string
  default     = "kafka-backup"
}

variable "package_path" {
  description = "Path of the Lambda zip built by `python functions/aws/build.py`."
  type        = string
}

variable "bootstrap_servers" {
  description = "Kafka bootstrap servers (HOST:PORT) reachable from Lambda over TLS."
  type        = list(string)
}

variable "topics" {
  description = "Topics to back up."
  type        = list(string)
}
