data "openstack_networking_network_v2" "net" {
  name = var.network_name
}

# Joins agents to the server; lives only in the (uncommitted) state and the nodes' user data.
resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

resource "openstack_networking_secgroup_v2" "cluster" {
  name        = "${var.name_prefix}-cluster"
  description = "FinPulse k3s/Ray nodes"
}

# Admin access: SSH, the Kubernetes API and the Ray dashboard, from one CIDR only.
resource "openstack_networking_secgroup_rule_v2" "admin" {
  for_each          = { ssh = 22, k8s_api = 6443, ray_dashboard = 8265 }
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = var.admin_cidr
  description       = each.key
}

# Node to node: kubelet, flannel VXLAN, Ray GCS/object transfer and pod traffic all stay inside.
resource "openstack_networking_secgroup_rule_v2" "intra" {
  for_each          = toset(["tcp", "udp"])
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value
  port_range_min    = 1
  port_range_max    = 65535
  remote_group_id   = openstack_networking_secgroup_v2.cluster.id
  description       = "intra-cluster ${each.value}"
}

# The head's port is made first so its fixed IP can go into the workers' user data.
resource "openstack_networking_port_v2" "head" {
  name               = "${var.name_prefix}-head"
  network_id         = data.openstack_networking_network_v2.net.id
  security_group_ids = [openstack_networking_secgroup_v2.cluster.id]
}

resource "openstack_networking_floatingip_v2" "head" {
  pool        = var.floating_ip_pool
  description = "${var.name_prefix} head"
}

locals {
  head_ip    = openstack_networking_port_v2.head.all_fixed_ips[0]
  hints      = var.reservation_id == "" ? [] : [var.reservation_id]
  agent_vars = { k3s_version = var.k3s_version, token = random_password.k3s_token.result, server_ip = local.head_ip }
  head_config = templatefile("${path.module}/cloud-init/head.yaml.tftpl", {
    k3s_version           = var.k3s_version
    token                 = random_password.k3s_token.result
    public_ip             = openstack_networking_floatingip_v2.head.address
    helm_version          = var.helm_version
    kuberay_chart_version = var.kuberay_chart_version
    gpu_nodes             = var.gpu_worker_count > 0
    device_plugin_version = var.nvidia_device_plugin_version
  })
}

resource "openstack_compute_instance_v2" "head" {
  name        = "${var.name_prefix}-head"
  image_name  = var.image_name
  flavor_name = var.head_flavor
  key_pair    = var.key_pair
  user_data   = local.head_config

  network {
    port = openstack_networking_port_v2.head.id
  }

  dynamic "scheduler_hints" {
    for_each = local.hints
    content {
      additional_properties = { reservation = scheduler_hints.value }
    }
  }
}

resource "openstack_networking_floatingip_associate_v2" "head" {
  floating_ip = openstack_networking_floatingip_v2.head.address
  port_id     = openstack_networking_port_v2.head.id
  depends_on  = [openstack_compute_instance_v2.head]
}

# CPU and GPU agents differ only in image, flavor and the cloud-init GPU switch: one resource.
locals {
  agents = merge(
    { for i in range(var.worker_count) : "worker-${i}" => { image = var.image_name, flavor = var.worker_flavor, gpu = false } },
    { for i in range(var.gpu_worker_count) : "gpu-${i}" => { image = var.gpu_image_name, flavor = var.gpu_flavor, gpu = true } },
  )
}

resource "openstack_compute_instance_v2" "agent" {
  for_each        = local.agents
  name            = "${var.name_prefix}-${each.key}"
  image_name      = each.value.image
  flavor_name     = each.value.flavor
  key_pair        = var.key_pair
  security_groups = [openstack_networking_secgroup_v2.cluster.name]
  user_data       = templatefile("${path.module}/cloud-init/agent.yaml.tftpl", merge(local.agent_vars, { gpu = each.value.gpu }))

  network {
    uuid = data.openstack_networking_network_v2.net.id
  }

  dynamic "scheduler_hints" {
    for_each = local.hints
    content {
      additional_properties = { reservation = scheduler_hints.value }
    }
  }
}
