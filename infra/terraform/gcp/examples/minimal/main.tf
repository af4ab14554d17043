# The smallest useful deployment: one shard every 15 minutes, SCRAM over TLS, a new bucket, the
# password in a new Secret Manager secret whose value you add after the first apply:
#
#   printf %s "$PASSWORD" | gcloud secrets versions add "$(terraform output -raw kafka_password_secret)" --data-file=-

provider "google" {
  project = var.project_id
  region  = var.region
}

module "kafka_backup" {
  source = "../.."

  project_id          = var.project_id
  region              = var.region
  source_archive_path = var.function_source_zip

  kafka_bootstrap_servers      = var.kafka_bootstrap_servers
  kafka_security_protocol      = "SASL_SSL"
  kafka_sasl_mechanism         = "SCRAM-SHA-512"
  kafka_sasl_username          = var.kafka_username
  create_kafka_password_secret = true

  backup_topics = var.topics
}
