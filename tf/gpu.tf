# A100 nodes for the transformer. Chameleon's A100s are bare metal (e.g. node type gpu_a100_pcie at
# CHI@UC), reserved through a Blazar lease and launched with the lease's reservation id as a scheduler
# hint; the k3s cluster runs on KVM@TACC. Two sites, two networks: the GPU node joins the k3s server
# over its public IP, and flannel carries pod traffic over WireGuard between public IPs (k3s's
# "distributed hybrid or multicloud cluster"; cross_site). tf/README.md has the lease steps.
locals {
  gpu_nodes      = { for i in range(var.gpu_node_count) : "gpu-${i}" => i }
  gpu_public_ips = { for k, f in openstack_networking_floatingip_v2.gpu : k => f.address }
}

resource "openstack_networking_secgroup_v2" "gpu" {
  count       = var.gpu_node_count > 0 ? 1 : 0
  provider    = openstack.gpu_site
  name        = "${var.name_prefix}-gpu"
  description = "FinPulse GPU nodes: SSH from the admin CIDR, WireGuard from the cluster's nodes"
}

resource "openstack_networking_secgroup_rule_v2" "gpu_ssh" {
  count             = var.gpu_node_count > 0 ? 1 : 0
  provider          = openstack.gpu_site
  security_group_id = openstack_networking_secgroup_v2.gpu[0].id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = var.admin_cidr
  description       = "ssh"
}

resource "openstack_networking_secgroup_rule_v2" "gpu_wireguard" {
  for_each          = var.gpu_node_count > 0 ? local.node_public_ips : {}
  provider          = openstack.gpu_site
  security_group_id = openstack_networking_secgroup_v2.gpu[0].id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "udp"
  port_range_min    = local.wireguard_port
  port_range_max    = local.wireguard_port
  remote_ip_prefix  = "${each.value}/32"
  description       = "wireguard from ${each.key}"
}

resource "openstack_networking_floatingip_v2" "gpu" {
  for_each    = local.gpu_nodes
  provider    = openstack.gpu_site
  pool        = var.gpu_floating_ip_pool
  description = "${var.name_prefix} ${each.key}"
}

resource "openstack_compute_instance_v2" "gpu" {
  for_each        = local.gpu_nodes
  provider        = openstack.gpu_site
  name            = "${var.name_prefix}-${each.key}"
  image_name      = var.gpu_image_name
  flavor_name     = var.gpu_flavor
  key_pair        = var.key_pair
  security_groups = [openstack_networking_secgroup_v2.gpu[0].name]
  user_data = templatefile("${path.module}/cloud-init/agent.yaml.tftpl", {
    k3s_version = var.k3s_version
    token       = random_password.k3s_token.result
    server_url  = "https://${openstack_networking_floatingip_v2.head.address}:6443"
    external_ip = openstack_networking_floatingip_v2.gpu[each.key].address
    node_labels = [local.gpu_label]
    node_taints = [local.gpu_taint]
    gpu         = true
  })

  network {
    name = var.gpu_network_name
  }

  scheduler_hints {
    additional_properties = { reservation = var.gpu_reservation_id }
  }

  lifecycle {
    precondition {
      condition     = var.cross_site && var.gpu_reservation_id != "" && var.gpu_site_cloud != ""
      error_message = "A GPU node needs cross_site = true, gpu_reservation_id (the lease's reservation) and gpu_site_cloud (the bare-metal site's clouds.yaml entry)."
    }
  }
}

resource "openstack_networking_floatingip_associate_v2" "gpu" {
  for_each    = openstack_networking_floatingip_v2.gpu
  provider    = openstack.gpu_site
  floating_ip = each.value.address
  port_id     = openstack_compute_instance_v2.gpu[each.key].network[0].port
}
