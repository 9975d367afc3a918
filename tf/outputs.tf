output "head_ip" {
  description = "Floating IP of the head node (SSH as `cc`, k8s API on 6443)."
  value       = openstack_networking_floatingip_v2.head.address
}

output "head_private_ip" {
  description = "Address of the k3s server inside the network."
  value       = local.head_ip
}

output "dashboard_url" {
  description = "Ray dashboard, once cluster/base/ray is applied (reachable from admin_cidr only)."
  value       = "http://${openstack_networking_floatingip_v2.head.address}:8265"
}

output "kubeconfig_command" {
  description = "Copies the cluster's kubeconfig, pointed at the floating IP."
  value       = "ssh cc@${openstack_networking_floatingip_v2.head.address} sudo cat /etc/rancher/k3s/k3s.yaml | sed 's/127.0.0.1/${openstack_networking_floatingip_v2.head.address}/' > kubeconfig-finpulse"
}
