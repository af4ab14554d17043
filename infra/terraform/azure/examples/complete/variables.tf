variable "name" {
  description = "Base name of the resources."
  type        = string
  default     = "kafka-backup"
}

variable "location" {
  description = "Azure region, e.g. \"westeurope\"; it must offer Flex Consumption and zone-redundant storage."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}

variable "address_space" {
  description = "Address space of the virtual network (the function subnet is its first quarter: a /26 of a /24)."
  type        = string
  default     = "10.42.0.0/24"
}

variable "operator_ip_ranges" {
  description = "Public addresses (CIDR) that may reach the backup storage too, e.g. for restores run from an office."
  type        = list(string)
  default     = []
}

variable "alert_email" {
  description = "Address the action group emails when an alert fires."
  type        = string
}

variable "kafka_oauth_token_provider" {
  description = "The function package's OAUTHBEARER token provider as \"module:callable\" (it receives scope=\"https://<namespace>.servicebus.windows.net/.default\" and must use the managed identity)."
  type        = string
}
