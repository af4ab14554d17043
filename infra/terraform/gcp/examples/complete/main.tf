# Four shards reading a Managed Service for Apache Kafka cluster with the function's own identity
# (SASL OAUTHBEARER over TLS), through a Serverless VPC Access connector, into a bucket with a
# 30-day retention policy and CMEK, alerting an e-mail channel.

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # Managed Kafka's bootstrap address: one name per cluster, port 9092 for SASL.
  bootstrap = "bootstrap.${var.kafka_cluster}.${var.region}.managedkafka.${var.project_id}.cloud.goog:9092"
}

# The cluster's brokers are reached through Private Service Connect endpoints in the cluster's
# subnet, so the function needs egress into that VPC.
resource "google_vpc_access_connector" "backup" {
  project       = var.project_id
  region        = var.region
  name          = "kafka-backup"
  network       = var.network
  ip_cidr_range = var.connector_cidr
  min_instances = 2
  max_instances = 3
  machine_type  = "e2-micro"
}

resource "google_monitoring_notification_channel" "oncall" {
  project      = var.project_id
  display_name = "Kafka backup on-call"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
}

module "kafka_backup" {
  source = "../.."

  project_id = var.project_id
  region     = var.region
  name       = "kafka-backup"
  labels     = { team = "platform", purpose = "kafka-backup" }

  # Bucket: objects cannot be deleted or replaced for 30 days (versioning is then off, see README).
  retention_period_days   = 30
  retention_policy_locked = false
  kms_key_name            = var.kms_key_name

  source_archive_path         = var.function_source_zip
  build_service_account_email = var.build_service_account_email

  memory          = "2Gi"
  cpu             = "1"
  timeout_seconds = 1800
  vpc_connector   = google_vpc_access_connector.backup.id

  kafka_bootstrap_servers   = [local.bootstrap]
  kafka_security_protocol   = "SASL_SSL"
  kafka_sasl_mechanism      = "OAUTHBEARER"
  kafka_sasl_token_provider = var.kafka_token_provider
  managed_kafka_cluster_id  = "projects/${var.project_id}/locations/${var.region}/clusters/${var.kafka_cluster}"

  backup_topic_patterns   = ["orders\\..*", "payments\\..*"]
  backup_exclude_patterns = [".*\\.retry"]

  shards   = 4
  schedule = "*/10 * * * *"

  notification_channels       = [google_monitoring_notification_channel.oncall.id]
  no_success_alert_minutes    = 60
  lag_alert_threshold_records = 1000000
}
