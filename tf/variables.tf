variable "name_prefix" {
  description = "Prefix of every resource name, so several people can share a project."
  type        = string
  default     = "finpulse"
}

variable "image_name" {
  description = "Image for the head and CPU workers (a Chameleon-supported Ubuntu)."
  type        = string
  default     = "CC-Ubuntu22.04"
}

variable "head_flavor" {
  description = "Flavor of the head node (k3s server, Ray head, MLflow, MinIO, Postgres, Prometheus)."
  type        = string
  default     = "m1.xlarge"
}

variable "worker_flavor" {
  description = "Flavor of the CPU workers (ETL, training, Gateway/Forecaster replicas)."
  type        = string
  default     = "m1.xlarge"
}

variable "worker_count" {
  description = "Number of CPU worker nodes."
  type        = number
  default     = 2
  validation {
    condition     = var.worker_count >= 0
    error_message = "worker_count must be >= 0."
  }
}

variable "reservation_id" {
  description = "Blazar reservation id for the KVM nodes (head, CPU workers) where the site asks for a lease; empty otherwise."
  type        = string
  default     = ""
}

variable "key_pair" {
  description = "Name of an existing OpenStack key pair for SSH."
  type        = string
}

variable "network_name" {
  description = "Network the nodes join; Chameleon's shared tenant network by default."
  type        = string
  default     = "sharednet1"
}

variable "floating_ip_pool" {
  description = "External network that floating IPs come from."
  type        = string
  default     = "public"
}

variable "admin_cidr" {
  description = "Only this CIDR reaches SSH, the k8s API, the Ray dashboard, MLflow, MinIO, Grafana and Prometheus (e.g. your IP/32)."
  type        = string
  validation {
    condition     = can(cidrhost(var.admin_cidr, 0)) && var.admin_cidr != "0.0.0.0/0"
    error_message = "admin_cidr must be a CIDR narrower than 0.0.0.0/0: the Ray dashboard has no login."
  }
}

variable "k3s_version" {
  description = "Pinned k3s release, so every node runs the same Kubernetes."
  type        = string
  default     = "v1.31.4+k3s1"
}

variable "helm_version" {
  description = "Pinned Helm release used to install the KubeRay operator."
  type        = string
  default     = "v3.16.4"
}

variable "kuberay_chart_version" {
  description = "KubeRay operator Helm chart; the manifests in cluster/base/ray target v1.7."
  type        = string
  default     = "1.7.0"
  validation {
    condition     = can(regex("^1\\.7\\.[0-9]+$", var.kuberay_chart_version))
    error_message = "cluster/base/ray is written for KubeRay 1.7.x."
  }
}

variable "nvidia_device_plugin_version" {
  description = "NVIDIA k8s-device-plugin Helm chart (with GPU feature discovery); runs only on nodes with an NVIDIA PCI device."
  type        = string
  default     = "0.17.0"
}

variable "cross_site" {
  description = "k3s over public IPs (flannel wireguard-native, every node gets a floating IP), so bare-metal GPU nodes from another site can join. Fixed when the head is created: changing it rebuilds the nodes."
  type        = bool
  default     = true
}

variable "gpu_node_count" {
  description = "Bare-metal GPU nodes (A100) from the lease at the GPU site; 0 runs sentiment on CPU."
  type        = number
  default     = 0
  validation {
    condition     = var.gpu_node_count >= 0
    error_message = "gpu_node_count must be >= 0."
  }
}

variable "gpu_site_cloud" {
  description = "clouds.yaml entry of the bare-metal site that holds the GPU lease (e.g. chi-uc); the KVM site comes from OS_CLOUD or the RC file."
  type        = string
  default     = ""
}

variable "gpu_reservation_id" {
  description = "Reservation id of the Blazar lease for the GPU nodes (node_type gpu_a100_pcie), given to Nova as the `reservation` scheduler hint."
  type        = string
  default     = ""
}

variable "gpu_image_name" {
  description = "Image of the GPU nodes: Chameleon's Ubuntu with the NVIDIA driver and CUDA (cloud-init adds the container toolkit)."
  type        = string
  default     = "CC-Ubuntu22.04-CUDA"
}

variable "gpu_flavor" {
  description = "Flavor at the bare-metal site: `baremetal` (the node type comes from the lease)."
  type        = string
  default     = "baremetal"
}

variable "gpu_network_name" {
  description = "Network at the GPU site."
  type        = string
  default     = "sharednet1"
}

variable "gpu_floating_ip_pool" {
  description = "External network at the GPU site that the GPU nodes' floating IPs come from."
  type        = string
  default     = "public"
}

variable "gpu_label" {
  description = "Value of the finpulse/gpu node label on the GPU nodes; cluster/ selects finpulse/gpu=a100."
  type        = string
  default     = "a100"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.gpu_label))
    error_message = "gpu_label must be a lower-case label value such as a100."
  }
}

variable "data_volume_size_gb" {
  description = "Size of the Cinder volume that holds MinIO and PostgreSQL."
  type        = number
  default     = 100
  validation {
    condition     = var.data_volume_size_gb >= 10
    error_message = "data_volume_size_gb must be at least 10."
  }
}

variable "data_volume_id" {
  description = "Id of an existing data volume to attach (kept from an earlier cluster); empty creates one."
  type        = string
  default     = ""
}

variable "ingress_host" {
  description = "DNS name of the API's Ingress, pointing at head_ip; empty uses <head_ip>.sslip.io (a public wildcard DNS)."
  type        = string
  default     = ""
}
