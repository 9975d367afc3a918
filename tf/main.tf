data "openstack_networking_network_v2" "net" {
  name = var.network_name
}

# Joins agents to the server; lives only in the (uncommitted) state and the nodes' user data.
resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

locals {
  # The Ingress (Traefik in k3s) answers the world: 443 serves the API, 80 answers ACME and redirects.
  public_ports = { http = 80, https = 443 }
  # Everything with a console or no login stays on admin_cidr: SSH, the k8s API, the Ray dashboard (no
  # login, and it runs jobs), MLflow, MinIO (API and console), Grafana, Prometheus, Alertmanager.
  admin_ports = {
    ssh           = 22
    k8s_api       = 6443
    ray_dashboard = 8265
    mlflow        = 5000
    minio_api     = 9000
    minio_console = 9001
    grafana       = 3000
    prometheus    = 9090
    alertmanager  = 9093
  }
  # k3s's flannel over WireGuard (wireguard-native) between nodes' public IPs (cross_site).
  wireguard_port = 51820
}

resource "openstack_networking_secgroup_v2" "cluster" {
  name        = "${var.name_prefix}-cluster"
  description = "FinPulse k3s/Ray nodes"
}

# One rule resource per kind, each over a plain map, though they look alike: checkov evaluates for_each
# over a plain map, but not over a merge of for-expressions (one merged map hid SSH open to the world
# from it), and tests/unit/test_terraform.py reads each kind's remote prefix directly.
resource "openstack_networking_secgroup_rule_v2" "public" {
  for_each          = local.public_ports
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = "0.0.0.0/0"
  description       = "ingress ${each.key}"
}

resource "openstack_networking_secgroup_rule_v2" "admin" {
  for_each          = local.admin_ports
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = var.admin_cidr
  description       = each.key
}

# Node to node inside the site: kubelet, flannel, Ray GCS/object transfer and pod traffic.
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

# Cross-site: WireGuard from every node's public IP (traffic between floating IPs carries the
# floating IP as its source, so the group rule above does not match it).
resource "openstack_networking_secgroup_rule_v2" "wireguard" {
  for_each          = var.cross_site ? local.node_public_ips : {}
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "udp"
  port_range_min    = local.wireguard_port
  port_range_max    = local.wireguard_port
  remote_ip_prefix  = "${each.value}/32"
  description       = "wireguard from ${each.key}"
}

# The GPU nodes join the k3s server over its public IP.
resource "openstack_networking_secgroup_rule_v2" "gpu_join" {
  for_each          = local.gpu_public_ips
  security_group_id = openstack_networking_secgroup_v2.cluster.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_ip_prefix  = "${each.value}/32"
  description       = "k3s join from ${each.key}"
}

# The head's port is made first so its fixed IP can go into the workers' user data; it outlives a
# rebuilt head, so the server keeps its address.
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
  head_ip         = openstack_networking_port_v2.head.all_fixed_ips[0]
  hints           = var.reservation_id == "" ? [] : [var.reservation_id]
  storage_label   = "finpulse/storage=true"
  gpu_label       = "finpulse/gpu=${var.gpu_label}"
  gpu_taint       = "nvidia.com/gpu=present:NoSchedule" # the value the device plugin chart's NFD tolerates
  ingress_host    = var.ingress_host != "" ? var.ingress_host : "${openstack_networking_floatingip_v2.head.address}.sslip.io"
  node_public_ips = merge({ head = openstack_networking_floatingip_v2.head.address }, local.worker_public_ips, local.gpu_public_ips)
  head_config = templatefile("${path.module}/cloud-init/head.yaml.tftpl", {
    k3s_version           = var.k3s_version
    token                 = random_password.k3s_token.result
    public_ip             = openstack_networking_floatingip_v2.head.address
    cross_site            = var.cross_site
    node_labels           = [local.storage_label]
    helm_version          = var.helm_version
    kuberay_chart_version = var.kuberay_chart_version
    device_plugin_version = var.nvidia_device_plugin_version
    volume_serial         = substr(local.data_volume_id, 0, 20)
    data_mount            = local.data_mount
    data_mount_unit       = "${replace(trimprefix(local.data_mount, "/"), "/", "-")}.mount"
    data_dirs             = local.data_dirs
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

# CPU workers (KVM): join over the private network; with cross_site they also get a floating IP,
# because flannel then reaches every node at its public IP.
locals {
  workers           = { for i in range(var.worker_count) : "worker-${i}" => i }
  worker_public_ips = { for k, f in openstack_networking_floatingip_v2.worker : k => f.address }
}

resource "openstack_networking_floatingip_v2" "worker" {
  for_each    = var.cross_site ? local.workers : {}
  pool        = var.floating_ip_pool
  description = "${var.name_prefix} ${each.key}"
}

resource "openstack_compute_instance_v2" "agent" {
  for_each        = local.workers
  name            = "${var.name_prefix}-${each.key}"
  image_name      = var.image_name
  flavor_name     = var.worker_flavor
  key_pair        = var.key_pair
  security_groups = [openstack_networking_secgroup_v2.cluster.name]
  user_data = templatefile("${path.module}/cloud-init/agent.yaml.tftpl", {
    k3s_version = var.k3s_version
    token       = random_password.k3s_token.result
    server_url  = "https://${local.head_ip}:6443"
    external_ip = var.cross_site ? openstack_networking_floatingip_v2.worker[each.key].address : ""
    node_labels = []
    node_taints = []
    gpu         = false
  })

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

resource "openstack_networking_floatingip_associate_v2" "worker" {
  for_each    = openstack_networking_floatingip_v2.worker
  floating_ip = each.value.address
  port_id     = openstack_compute_instance_v2.agent[each.key].network[0].port
}
