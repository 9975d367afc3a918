"""tf/: the Terraform parses and is formatted, cloud-init renders to valid cloud-config, nothing secret
is committed and the admin-only ports stay admin-only. No provider download: `terraform validate` is
not run (it needs `terraform init` with network access)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2  # python-hcl2: a dev dependency, so this never skips
import pytest
import yaml

TF = Path(__file__).resolve().parents[2] / "tf"
TF_FILES = sorted(TF.glob("*.tf"))
TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not on PATH")


def test_tf_files_exist():
    assert {p.name for p in TF_FILES} >= {"versions.tf", "variables.tf", "main.tf", "outputs.tf"}
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


def render(template: str, variables: dict, tmp_path: Path) -> str:
    """templatefile() through `terraform console` in an empty folder: no providers, no network."""
    expr = f"jsonencode(templatefile({json.dumps(str(TF / 'cloud-init' / template))}, {json.dumps(variables)}))"
    r = subprocess.run([TERRAFORM, "console"], input=expr, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(json.loads(r.stdout))


@needs_terraform
@pytest.mark.parametrize("gpu", [False, True])
def test_cloud_init_renders_to_cloud_config(gpu, tmp_path):
    head = render("head.yaml.tftpl", {"k3s_version": "v1.31.4+k3s1", "token": "tok", "public_ip": "192.0.2.10",
                                      "helm_version": "v3.16.4", "kuberay_chart_version": "1.7.0",
                                      "gpu_nodes": gpu, "device_plugin_version": "0.17.0"}, tmp_path)
    agent = render("agent.yaml.tftpl", {"k3s_version": "v1.31.4+k3s1", "token": "tok", "server_ip": "10.0.0.5",
                                        "gpu": gpu}, tmp_path)
    for text in (head, agent):
        assert text.startswith("#cloud-config\n")
        assert isinstance(yaml.safe_load(text)["runcmd"], list)
    head_cmds = " ".join(yaml.safe_load(head)["runcmd"])
    assert "kuberay/kuberay-operator --version '1.7.0'" in head_cmds
    assert "--tls-san '192.0.2.10'" in head_cmds and "INSTALL_K3S_VERSION='v1.31.4+k3s1'" in head_cmds
    assert ("nvidia-device-plugin" in head_cmds) == gpu
    agent_cmd = " ".join(yaml.safe_load(agent)["runcmd"])
    assert "K3S_URL='https://10.0.0.5:6443'" in agent_cmd
    assert ("nvidia.com/gpu=true:NoSchedule" in agent_cmd) == gpu  # the taint the Ray GPU group tolerates


def test_admin_ports_only_from_admin_cidr():
    main = (TF / "main.tf").read_text()
    assert re.search(r"ssh\s*=\s*22,\s*k8s_api\s*=\s*6443,\s*ray_dashboard\s*=\s*8265", main)
    prefixes = re.findall(r"remote_ip_prefix\s*=\s*(\S+)", main)
    assert prefixes == ["var.admin_cidr"]
    variables = (TF / "variables.tf").read_text()
    assert re.search(r'variable "admin_cidr" \{(?:(?!\n\}).)*?validation', variables, re.S)
    assert 'default     = "1.7.0"' in variables  # KubeRay chart matches the CRDs the manifests target
    assert 'source  = "terraform-provider-openstack/openstack"' in (TF / "versions.tf").read_text()


def test_no_secrets_committed():
    ignored = (TF / ".gitignore").read_text().split()
    assert {"*.tfstate", "terraform.tfvars", ".terraform/"} <= set(ignored)
    for path in TF.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), path
            assert not re.search(r"(?i)^\s*(password|application_credential_secret|token)\s*=\s*\"", text, re.M), path
