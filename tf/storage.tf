# The data volume: MinIO and PostgreSQL (every dataset, the MLflow registry) live on a Cinder volume
# attached to the head, so rebuilding the head (or any node) keeps the data. Cinder volumes exist at
# KVM@TACC, where the head runs; the bare-metal sites have none.
locals {
  # The mount point and folders are a contract with the hostPath/local volumes in cluster/.
  data_mount     = "/mnt/finpulse"
  data_dirs      = ["minio", "postgres", "nats"]
  data_volume_id = var.data_volume_id != "" ? var.data_volume_id : one(openstack_blockstorage_volume_v3.data[*].id)
}

resource "openstack_blockstorage_volume_v3" "data" {
  count       = var.data_volume_id == "" ? 1 : 0
  name        = "${var.name_prefix}-data"
  description = "FinPulse MinIO and PostgreSQL data; outlives the instances (tf/README.md)"
  size        = var.data_volume_size_gb

  # `terraform destroy` stops here instead of deleting the data: tf/README.md says how to keep the
  # volume (state rm, then data_volume_id next time) or delete it on purpose.
  lifecycle {
    prevent_destroy = true
  }
}

# Attached after boot: the head's cloud-init waits for the disk, formats it only if it is blank, and
# mounts it by filesystem UUID with nofail.
resource "openstack_compute_volume_attach_v2" "data" {
  instance_id = openstack_compute_instance_v2.head.id
  volume_id   = local.data_volume_id
}
