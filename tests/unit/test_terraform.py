"""tf/: the Terraform parses and is formatted, cloud-init renders to valid cloud-config, the ports are
open to whom they should be, the data volume is attached and survives, the GPU node carries the label
cluster/ selects, and nothing secret is committed. No provider download: `terraform validate` is not run
(it needs `terraform init` with network access); hcl2 parsing and `terraform console` rendering are."""

from __future__ import annotations

import re
import subprocess

import hcl2  # python-hcl2: a dev dependency, so this never skips
import pytest

from tests.support.terraform import (
    TERRAFORM,
    TF,
    TF_FILES,
    agent_vars,
    head_vars,
    load_tf,
    needs_terraform,
    render,
    runcmd,
)


def test_tf_files_exist():
    assert {p.name for p in TF_FILES} >= {"versions.tf", "variables.tf", "main.tf", "outputs.tf", "storage.tf",
                                          "gpu.tf"}
    assert (TF / "terraform.tfvars.example").is_file() and (TF / "README.md").is_file()


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_tf_parses_with_python_hcl2(path):
    with path.open() as f:
        assert hcl2.load(f) is not None


@needs_terraform
def test_terraform_fmt_check():
    r = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr  # also fails on HCL syntax errors


@needs_terraform
@pytest.mark.parametrize("cross_site", [False, True])
def test_head_cloud_init(cross_site, tmp_path):
    cmds = runcmd(render("head.yaml.tftpl", head_vars(cross_site=cross_site), tmp_path))
    assert cmds[0] == "/usr/local/sbin/finpulse-mount-data"  # the data volume is mounted before k3s starts
    k3s = next(c for c in cmds if "get.k3s.io" in c)
    assert "--tls-san '192.0.2.10'" in k3s and "INSTALL_K3S_VERSION='v1.31.4+k3s1'" in k3s
    assert "--node-label 'finpulse/storage=true'" in k3s  # MinIO and PostgreSQL are pinned to this node
    assert ("--flannel-backend wireguard-native --flannel-external-ip" in k3s) == cross_site
    assert ("--node-external-ip '192.0.2.10'" in k3s) == cross_site
    joined = " ".join(cmds)
    assert "kuberay/kuberay-operator --version '1.7.0'" in joined
    assert "nvdp/nvidia-device-plugin --version '0.17.0'" in joined and "gfd.enabled=true" in joined


@needs_terraform
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu-worker", "gpu-node"])
def test_agent_cloud_init(gpu, tmp_path):
    cmds = runcmd(render("agent.yaml.tftpl", agent_vars(gpu), tmp_path))
    k3s = next(c for c in cmds if "get.k3s.io" in c)
    assert ("K3S_URL='https://192.0.2.10:6443'" if gpu else "K3S_URL='https://10.0.0.5:6443'") in k3s
    # the label the RayCluster's GPU group selects, and the taint only it tolerates
    assert ("--node-label 'finpulse/gpu=a100'" in k3s) == gpu
    assert ("--node-taint 'nvidia.com/gpu=present:NoSchedule'" in k3s) == gpu
    assert ("--node-external-ip '198.51.100.7'" in k3s) == gpu
    assert ("--default-runtime nvidia" in k3s) == gpu
    assert any("nvidia-container-toolkit" in c for c in cmds) == gpu
    if gpu:  # the toolkit is in place before k3s starts, so k3s finds the nvidia runtime
        assert next(i for i, c in enumerate(cmds) if "nvidia-container-toolkit" in c) < cmds.index(k3s)


def test_gpu_node_is_a_leased_bare_metal_node_that_joins_over_public_ips():
    tf = load_tf()
    gpu = tf["resource"]["openstack_compute_instance_v2"]["gpu"]
    assert gpu["provider"] == "${openstack.gpu_site}"  # the bare-metal site, not KVM@TACC
    assert gpu["scheduler_hints"][0]["additional_properties"] == {"reservation": "${var.gpu_reservation_id}"}
    for arg in ("node_labels = [local.gpu_label]", "node_taints = [local.gpu_taint]", "gpu         = true",
                "server_url  = \"https://${openstack_networking_floatingip_v2.head.address}:6443\""):
        assert arg in (TF / "gpu.tf").read_text()
    assert tf["locals"]["gpu_label"] == "finpulse/gpu=${var.gpu_label}"
    assert tf["variable"]["gpu_label"]["default"] == "a100"
    assert tf["variable"]["gpu_flavor"]["default"] == "baremetal"
    assert tf["variable"]["gpu_node_count"]["default"] == 0
    # the head's flannel settings depend on cross_site only: adding a GPU node later does not rebuild it
    head_args = re.search(r"head_config = templatefile\((.*?)\n  \}\)", (TF / "main.tf").read_text(), re.S)[1]
    assert "gpu_node_count" not in head_args and "cross_site            = var.cross_site" in head_args


def rules() -> dict:
    return load_tf()["resource"]["openstack_networking_secgroup_rule_v2"]


def test_only_the_ingress_is_open_to_the_world():
    tf_locals, all_rules = load_tf()["locals"], rules()
    assert tf_locals["public_ports"] == {"http": 80, "https": 443}
    assert all_rules["public"]["for_each"] == "${local.public_ports}"
    assert all_rules["public"]["remote_ip_prefix"] == "0.0.0.0/0"
    admin = tf_locals["admin_ports"]
    for port in (22, 6443, 8265, 5000, 9000, 9001, 3000, 9090, 9093):  # SSH, k8s, Ray, MLflow, MinIO, Grafana...
        assert port in admin.values()
    assert not set(admin.values()) & set(tf_locals["public_ports"].values())
    assert all_rules["admin"]["for_each"] == "${local.admin_ports}"
    assert all_rules["admin"]["remote_ip_prefix"] == "${var.admin_cidr}"
    assert all_rules["gpu_ssh"]["remote_ip_prefix"] == "${var.admin_cidr}"
    # every other rule is the security group itself or one node's public IP (/32), never a wider range
    for name, rule in all_rules.items():
        if name not in ("public", "admin", "gpu_ssh"):
            assert "remote_group_id" in rule or rule["remote_ip_prefix"] == "${each.value}/32", name
    variables = (TF / "variables.tf").read_text()
    assert re.search(r'variable "admin_cidr" \{(?:(?!\n\}).)*?validation', variables, re.S)
    assert 'default     = "1.7.0"' in variables  # KubeRay chart matches the CRDs the manifests target
    assert 'source  = "terraform-provider-openstack/openstack"' in (TF / "versions.tf").read_text()


def test_data_volume_is_attached_to_the_head_and_outlives_it():
    tf = load_tf()
    volume = tf["resource"]["openstack_blockstorage_volume_v3"]["data"]
    assert volume["size"] == "${var.data_volume_size_gb}" and tf["variable"]["data_volume_size_gb"]["default"] == 100
    assert volume["lifecycle"][0]["prevent_destroy"] is True
    attach = tf["resource"]["openstack_compute_volume_attach_v2"]["data"]
    assert attach == {"instance_id": "${openstack_compute_instance_v2.head.id}", "volume_id": "${local.data_volume_id}"}
    assert "block_device" not in tf["resource"]["openstack_compute_instance_v2"]["head"]
    assert not any("delete_on_termination" in p.read_text() for p in TF_FILES)
    assert tf["locals"]["data_mount"] == "/mnt/finpulse" and tf["locals"]["storage_label"] == "finpulse/storage=true"
    assert "volume_serial         = substr(local.data_volume_id, 0, 20)" in (TF / "main.tf").read_text()


def test_no_secrets_committed():
    ignored = (TF / ".gitignore").read_text().split()
    assert {"*.tfstate", "terraform.tfvars", ".terraform/"} <= set(ignored)
    for path in TF.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), path
            assert not re.search(r"(?i)^\s*(password|application_credential_secret|token)\s*=\s*\"", text, re.M), path


def test_the_volume_holds_a_folder_for_every_local_volume_the_cluster_claims():
    """cluster/'s local PersistentVolumes point into the data volume at folders cloud-init makes (a local
    volume never creates its folder: a missing one leaves MinIO/PostgreSQL/NATS pending)."""
    from tests.support.manifests import rendered

    tf = load_tf()["locals"]
    paths = {d["spec"]["local"]["path"] for d in rendered("chameleon")
             if d["kind"] == "PersistentVolume" and "local" in d["spec"]}
    assert paths and paths <= {f"{tf['data_mount']}/{d}" for d in tf["data_dirs"]}, (paths, tf["data_dirs"])
    storage_nodes = {t["values"][0] for d in rendered("chameleon") if d["kind"] == "PersistentVolume"
                     for term in d["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
                     for t in term["matchExpressions"] if t["key"] == tf["storage_label"].split("=")[0]}
    assert storage_nodes == {tf["storage_label"].split("=")[1]}
