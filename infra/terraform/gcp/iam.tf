################################################################################
# The function's identity
################################################################################

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "${var.name}-fn"
  display_name = "${var.name} backup function"
  description  = "Runs the ${var.name} Kafka backup function: objects in its backup bucket, its Kafka password secret, nothing else."
}

locals {
  # What the engine does to the bucket, through obstore's GCS client: create-if-absent and
  # generation-matched writes (create; an overwrite of head.json also needs delete), reads and
  # HEADs (get), listings (list), orphan and temporary-object removal (delete), and segments above
  # 8 MiB as XML multipart uploads (multipartUploads.create, and abort when an upload fails).
  storage_permissions = [
    "storage.multipartUploads.abort",
    "storage.multipartUploads.create",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
  ]
  storage_role = var.create_storage_custom_role ? google_project_iam_custom_role.storage[0].id : "roles/storage.objectUser"
}

# A role definition, not a grant: it is bound below on the backup bucket only.
resource "google_project_iam_custom_role" "storage" {
  count = var.create_storage_custom_role ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_object_writer"
  title       = "${var.name} backup object writer"
  description = "Exactly the object and multipart-upload permissions the kafka-backup engine uses; bound on one bucket."
  permissions = local.storage_permissions
}

resource "google_storage_bucket_iam_member" "function_objects" {
  bucket = local.bucket_name
  role   = local.storage_role
  member = google_service_account.function.member
}

resource "google_secret_manager_secret_iam_member" "function_password" {
  count = local.password_secret_on ? 1 : 0

  project   = var.project_id
  secret_id = local.password_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function.member
}

# roles/managedkafka.client carries managedkafka.clusters.connect, checked when the function's
# OAUTHBEARER (or SASL/PLAIN) login reaches the cluster. The provider has no cluster-level IAM
# resource for Managed Kafka, so the grant is on the cluster's project; what the identity may read
# inside a cluster is governed by Kafka ACLs (see README).
resource "google_project_iam_member" "function_managed_kafka" {
  count = var.managed_kafka_cluster_id == null ? 0 : 1

  project = split("/", var.managed_kafka_cluster_id)[1]
  role    = "roles/managedkafka.client"
  member  = google_service_account.function.member
}

# Both roles exist only at project level and carry write-only permissions for logs / time series.
resource "google_project_iam_member" "function_log_writer" {
  count = var.attach_log_writer_role ? 1 : 0

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.function.member
}

resource "google_project_iam_member" "function_metric_writer" {
  count = var.attach_metric_writer_role ? 1 : 0

  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.function.member
}

################################################################################
# Cloud Scheduler's identity: may invoke this function, nothing else
################################################################################

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-sched"
  display_name = "${var.name} scheduler invoker"
  description  = "Identity in the OIDC token Cloud Scheduler sends to the ${var.name} backup function."
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = local.service_name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

################################################################################
# Build identity (optional) and CMEK
################################################################################

resource "google_storage_bucket_iam_member" "build_source_reader" {
  count = var.create_source_bucket && var.build_service_account_email != null ? 1 : 0

  bucket = local.source_bucket_name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${var.build_service_account_email}"
}
