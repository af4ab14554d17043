# The smallest useful deployment: a Kafka cluster reached over the internet with SASL/SCRAM,
# every topic backed up every 15 minutes into a new storage account.

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
}

module "kafka_backup" {
  source = "../.."

  name                = var.name
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location

  kafka_bootstrap_servers = var.kafka_bootstrap_servers
  kafka_sasl_username     = var.kafka_sasl_username
  kafka_sasl_password     = var.kafka_sasl_password
  backup_topic_patterns   = [".*"]
}
