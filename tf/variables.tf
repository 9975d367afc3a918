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

variable "gpu_image_name" {
  description = "Image for GPU workers: Ubuntu with the NVIDIA driver and container toolkit."
  type        = string
  default     = "CC-Ubuntu22.04-CUDA"
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

variable "gpu_flavor" {
  description = "Flavor of the GPU workers (sentiment scoring, training and serving)."
  type        = string
  default     = "g1.h100.pci.1"
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

variable "gpu_worker_count" {
  description = "Number of GPU worker nodes; 0 runs sentiment on CPU."
  type        = number
  default     = 0
  validation {
    condition     = var.gpu_worker_count >= 0
    error_message = "gpu_worker_count must be >= 0."
  }
}

variable "reservation_id" {
  description = "Blazar reservation id for bare-metal flavors (Chameleon leases); empty for KVM."
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
  description = "Only this CIDR reaches SSH, the k8s API and the Ray dashboard (e.g. your IP/32)."
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
  description = "NVIDIA k8s-device-plugin Helm chart, installed only when gpu_worker_count > 0."
  type        = string
  default     = "0.17.0"
}
