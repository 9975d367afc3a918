output "head_ip" {
  description = "Floating IP of the head node (SSH as `cc`, k8s API on 6443)."
  value       = openstack_networking_floatingip_v2.head.address
}

output "head_private_ip" {
  description = "Address of the k3s server inside the network."
  value       = local.head_ip
}

output "dashboard_url" {
  description = "Ray dashboard, once cluster/ is applied (reachable from admin_cidr only)."
  value       = "http://${openstack_networking_floatingip_v2.head.address}:8265"
}

output "ingress_ip" {
  description = "Where the Ingress (Traefik, ports 80 and 443, open to the world) answers: the head's floating IP."
  value       = openstack_networking_floatingip_v2.head.address
}

output "ingress_host" {
  description = "Host name for the API's Ingress rule and TLS certificate."
  value       = local.ingress_host
}

output "api_url" {
  description = "The API through the Ingress, once cluster/ is applied."
  value       = "https://${local.ingress_host}"
}

output "gpu_node_ips" {
  description = "Floating IPs of the GPU nodes at the bare-metal site (SSH as `cc`)."
  value       = local.gpu_public_ips
}

output "data_volume_id" {
  description = "The Cinder volume with MinIO and PostgreSQL: keep it (data_volume_id) to reuse the data in a new cluster."
  value       = local.data_volume_id
}

output "node_contract" {
  description = "What cluster/ relies on: node labels, the GPU taint and the data volume's mount point and folders (on the storage node)."
  value = {
    storage_label = local.storage_label
    gpu_label     = local.gpu_label
    gpu_taint     = local.gpu_taint
    data_mount    = local.data_mount
    data_dirs     = [for d in local.data_dirs : "${local.data_mount}/${d}"]
  }
}

output "kubeconfig_command" {
  description = "Copies the cluster's kubeconfig, pointed at the floating IP."
  value       = "ssh cc@${openstack_networking_floatingip_v2.head.address} sudo cat /etc/rancher/k3s/k3s.yaml | sed 's/127.0.0.1/${openstack_networking_floatingip_v2.head.address}/' > kubeconfig-finpulse"
}
