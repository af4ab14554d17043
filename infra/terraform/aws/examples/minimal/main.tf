# The least a user sets: a name, the package, the brokers and the topics. Everything else takes
# the module's defaults: a new bucket with its own KMS key, one shard every hour, TLS to the
# brokers, alarms without notifications.

# The region and credentials come from the environment (AWS_REGION, AWS_PROFILE, ...).
provider "aws" {}

module "kafka_backup" {
  source = "../.."

  name              = var.name
  package_path      = var.package_path
  bootstrap_servers = var.bootstrap_servers
  topics            = var.topics
}
