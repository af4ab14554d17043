terraform {
  # 1.5: strcontains() in variable validation (startswith/endswith and preconditions are older).
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 5.0 renamed the Secret Manager replication block to `auto`; 5.22 added the bucket
      # soft_delete_policy; 5.26 added build_config.service_account to cloudfunctions2.
      version = ">= 5.26"
    }
  }
}
