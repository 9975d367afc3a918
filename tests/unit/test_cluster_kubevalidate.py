"""`kubernetes-validate --strict` on every core resource of every rendered overlay, against the Kubernetes
that tf/ installs (k3s_version), with the schemas the package bundles (no network). Ray resources go
through the KubeRay CRD schemas (test_cluster_manifests.py); Traefik's Middleware, the one other custom
resource, through the closed schema below. Any other API group fails the test until it is covered."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from tests.support.kube import containers, schema_errors
from tests.support.manifests import OVERLAYS, rendered

ROOT = Path(__file__).resolve().parents[2]
CUSTOM_GROUPS = {"ray.io", "traefik.io"}


def k3s_kubernetes_version() -> str:
    """The Kubernetes minor of tf/'s pinned k3s (v1.31.4+k3s1 -> 1.31.0): what the API server will accept."""
    text = (ROOT / "tf" / "variables.tf").read_text()
    block = text[text.index('variable "k3s_version"'):]
    major, minor = re.search(r'default\s*=\s*"v(\d+)\.(\d+)\.\d+\+k3s\d+"', block).groups()
    return f"{major}.{minor}.0"


def group(doc: dict) -> str:
    return doc["apiVersion"].rpartition("/")[0]


def is_core(doc: dict) -> bool:
    """Built into Kubernetes: the legacy core group (`v1`), dot-less groups (apps, batch) and *.k8s.io."""
    return "." not in group(doc) or group(doc).endswith(".k8s.io")


def kubernetes_validate_cli(docs: list[dict], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    exe = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(exe), "--strict", "-k", k3s_kubernetes_version(), str(path)],
                          capture_output=True, text=True, timeout=120)


def test_schemas_for_the_k3s_version_are_bundled():
    version = k3s_kubernetes_version()
    bundled = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    assert bundled.is_dir(), f"kubernetes-validate has no strict schemas for {version}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_resources_pass_kubernetes_validate_strict(overlay, tmp_path):
    docs = rendered(overlay)
    core = [d for d in docs if is_core(d)]
    assert {"Service", "StatefulSet", "CronJob", "Ingress", "ConfigMap", "Namespace"} <= {d["kind"] for d in core}
    others = {group(d) for d in docs if not is_core(d)}
    assert others <= CUSTOM_GROUPS, f"custom resources without a validation here: {others - CUSTOM_GROUPS}"
    proc = kubernetes_validate_cli(core, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" passed for resource ") == len(core), proc.stdout  # none skipped


def _first(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


@pytest.mark.parametrize("kind, mutate, needle", [
    ("StatefulSet", lambda d: containers(d)[0].__setitem__("imagePulPolicy", "Always"), "imagePulPolicy"),  # typo
    ("Service", lambda d: d["spec"]["ports"][0].__setitem__("port", "eight thousand"), "eight thousand"),
    ("Ingress", lambda d: d["spec"].__setitem__("ingressClass", "traefik"), "ingressClass"),  # not a field
    ("CronJob", lambda d: d["spec"].__setitem__("concurrencyPolicy", 3), "concurrencyPolicy"),
])
def test_kubernetes_validate_catches_broken_resources(tmp_path, kind, mutate, needle):
    broken = copy.deepcopy(_first(rendered("chameleon"), kind))
    mutate(broken)
    proc = kubernetes_validate_cli([broken], tmp_path)
    assert proc.returncode != 0 and needle in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --- Traefik Middleware --------------------------------------------------------------------------
# No Traefik CRD schema is vendored: this closed schema covers the two middleware types FinPulse uses,
# with the fields Traefik documents for them (doc.traefik.io, middlewares/http/inflightreq and retry;
# the same in Traefik v2.10+ and v3, i.e. whichever k3s ships). Another middleware type fails here.

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
MIDDLEWARE = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "traefik.io/v1alpha1"}, "kind": {"const": "Middleware"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": _NAME, "namespace": _NAME}},
        "spec": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1, "properties": {
            "inFlightReq": {"type": "object", "additionalProperties": False, "required": ["amount"], "properties": {
                "amount": {"type": "integer", "minimum": 1},
                "sourceCriterion": {"type": "object", "additionalProperties": False, "maxProperties": 1, "properties": {
                    "requestHost": {"type": "boolean"}, "requestHeaderName": {"type": "string"},
                    "ipStrategy": {"type": "object", "additionalProperties": False, "properties": {
                        "depth": {"type": "integer", "minimum": 0}, "ipv6Subnet": {"type": "integer"},
                        "excludedIPs": {"type": "array", "items": {"type": "string"}}}}}}}},
            "retry": {"type": "object", "additionalProperties": False, "required": ["attempts"], "properties": {
                "attempts": {"type": "integer", "minimum": 1},
                "initialInterval": {"type": "string", "pattern": r"^\d+(\.\d+)?(ns|us|ms|s|m|h)$"}}}}}}}


def middlewares(overlay: str) -> list[dict]:
    return [d for d in rendered(overlay) if group(d) == "traefik.io"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_traefik_middlewares_validate(overlay):
    found = middlewares(overlay)
    assert found
    for m in found:
        assert schema_errors(Draft7Validator(MIDDLEWARE), m) == [], m["metadata"]["name"]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["spec"].__setitem__("inFlightRequest", {"amount": 5}), "inFlightRequest"),  # typo
    (lambda d: d["spec"].setdefault("inFlightReq", {}).__setitem__("amount", "256"), "256"),
    (lambda d: d["spec"].setdefault("retry", {}).__setitem__("initialInterval", "100 ms"), "100 ms"),
])
def test_middleware_validation_catches_broken_ones(mutate, needle):
    broken = copy.deepcopy(middlewares("chameleon")[0])
    broken["spec"] = {}
    mutate(broken)
    errors = schema_errors(Draft7Validator(MIDDLEWARE), broken)
    assert errors and any(needle in e for e in errors), errors
