"""tf/ read for tests: every .tf file through python-hcl2 (quotes stripped), and the cloud-init
templates rendered through `terraform console` with the values main.tf and gpu.tf pass."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

TF = Path(__file__).resolve().parents[2] / "tf"
TF_FILES = sorted(TF.glob("*.tf"))
TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not on PATH")


def _plain(value):
    """python-hcl2 8 keeps HCL quotes and comment/block markers: strip them so tests read values."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k not in ("__comments__", "__is_block__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_tf() -> dict:
    """Every .tf file merged: {"resource": {type: {name: body}}, "locals": {...}, "variable": {...}}."""
    merged: dict = {"resource": {}, "locals": {}, "variable": {}}
    for path in TF_FILES:
        with path.open() as f:
            doc = _plain(hcl2.load(f))
        for block in doc.get("resource", []):
            for rtype, by_name in block.items():
                merged["resource"].setdefault(rtype, {}).update(by_name)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        for block in doc.get("variable", []):
            merged["variable"].update(block)
    return merged


def render(template: str, variables: dict, tmp_path: Path) -> str:
    """templatefile() through `terraform console` in an empty folder: no providers, no network."""
    expr = f"jsonencode(templatefile({json.dumps(str(TF / 'cloud-init' / template))}, {json.dumps(variables)}))"
    r = subprocess.run([TERRAFORM, "console"], input=expr, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(json.loads(r.stdout))


def head_vars(**over) -> dict:
    """The head template's variables as main.tf passes them (local values filled in)."""
    tf = load_tf()["locals"]
    base = {"k3s_version": "v1.31.4+k3s1", "token": "tok", "public_ip": "192.0.2.10", "cross_site": True,
            "node_labels": [tf["storage_label"]], "helm_version": "v3.16.4", "kuberay_chart_version": "1.7.0",
            "device_plugin_version": "0.17.0", "volume_serial": "vol-serial-for-tests",
            "data_mount": tf["data_mount"], "data_mount_unit": "mnt-finpulse.mount", "data_dirs": tf["data_dirs"]}
    return base | over


def agent_vars(gpu: bool) -> dict:
    """The agent template's variables as gpu.tf (GPU node) or main.tf (CPU worker) passes them."""
    tf = load_tf()["locals"]
    label = tf["gpu_label"].replace("${var.gpu_label}", load_tf()["variable"]["gpu_label"]["default"])
    return {"k3s_version": "v1.31.4+k3s1", "token": "tok", "gpu": gpu,
            "server_url": "https://192.0.2.10:6443" if gpu else "https://10.0.0.5:6443",
            "external_ip": "198.51.100.7" if gpu else "",
            "node_labels": [label] if gpu else [], "node_taints": [tf["gpu_taint"]] if gpu else []}


def runcmd(text: str) -> list[str]:
    doc = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n") and isinstance(doc["runcmd"], list)
    return doc["runcmd"]
