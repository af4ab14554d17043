# The secret only: its value is added out of band (`gcloud secrets versions add`), so that the
# password never enters Terraform state or plan output. The function reads it at run time through
# a secretref:gcp-secretmanager:... reference, so a rotation applies from the next run on.
resource "google_secret_manager_secret" "kafka_password" {
  count = var.create_kafka_password_secret ? 1 : 0

  project   = var.project_id
  secret_id = coalesce(var.kafka_password_secret_id, "${var.name}-kafka-password")
  labels    = var.labels

  replication {
    dynamic "auto" {
      for_each = length(var.secret_replica_locations) == 0 ? [1] : []
      content {}
    }

    dynamic "user_managed" {
      for_each = length(var.secret_replica_locations) == 0 ? [] : [1]
      content {
        dynamic "replicas" {
          for_each = var.secret_replica_locations
          content {
            location = replicas.value
          }
        }
      }
    }
  }
}
