# 1.11 (Terraform and OpenTofu) is the first release with write-only arguments and ephemeral
# variables, which keep the Kafka password out of plans and state (key vault secret `value_wo`).
#
# azurerm: written and validated against the 5.x schema. There `rbac_authorization_enabled` (key
# vault) is required, and `local_authentication_enabled` (application insights) and
# `storage_account_id` (containers) replace the 4.x names that 5.0 removed.
terraform {
  required_version = ">= 1.11"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 5.0"
    }
  }
}
