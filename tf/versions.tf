terraform {
  required_version = ">= 1.5"
  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "~> 3.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

# Credentials come from the environment (source the Chameleon "OpenStack RC file" for your project
# and site, or set OS_CLOUD with a clouds.yaml): nothing secret lives in this folder.
provider "openstack" {}

# The bare-metal site that holds the GPU lease (e.g. CHI@UC), from a clouds.yaml entry: each
# Chameleon site has its own endpoint and credentials. Unused (never authenticates) with no GPU node.
provider "openstack" {
  alias = "gpu_site"
  cloud = var.gpu_site_cloud == "" ? null : var.gpu_site_cloud
}
