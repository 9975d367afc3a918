"""Reading rendered manifests (tests/support/manifests.py) the way Kubernetes and KubeRay will: pod specs
inside any resource, a container's effective environment, and the vendored KubeRay CRD schemas made
as strict as the API server's field validation."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft7Validator

CRDS = Path(__file__).resolve().parent / "kuberay-crds"  # vendored v1.7.0 schemas: see SOURCES.md there
CRD_FILES = {"RayCluster": "ray.io_rayclusters.v1.schema.json", "RayJob": "ray.io_rayjobs.v1.schema.json",
             "RayService": "ray.io_rayservices.v1.schema.json"}


def strict(schema: dict | list) -> dict | list:
    """Kubernetes rejects unknown fields (kubectl's strict validation); plain JSON Schema allows them.
    Close every object that lists its properties, except where the CRD itself keeps unknown fields."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def crd_schema(kind: str) -> dict:
    return strict(json.loads((CRDS / CRD_FILES[kind]).read_text()))


def crd_validators() -> dict[str, Draft7Validator]:
    return {kind: Draft7Validator(crd_schema(kind)) for kind in CRD_FILES}


def schema_errors(validator: Draft7Validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def pod_specs(doc) -> list[dict]:
    """Every pod spec (a dict with ``containers``) inside a manifest, however deep."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    return found


def containers(doc) -> list[dict]:
    """Every container spec inside a manifest, however deep (pod templates of CRDs included)."""
    return [c for pod in pod_specs(doc) for c in [*pod["containers"], *pod.get("initContainers", [])]]


def index(docs: list[dict]) -> dict[str, dict[str, dict]]:
    """kind -> name -> resource."""
    out: dict[str, dict[str, dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return out


def container_env(container: dict, docs: list[dict]) -> dict[str, dict]:
    """The container's environment as the kubelet builds it: ConfigMaps named in envFrom (their keys as
    ``{"value": ...}``, each ConfigMap must exist in ``docs``), then ``env`` entries, which win."""
    config_maps = index(docs).get("ConfigMap", {})
    env: dict[str, dict] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"envFrom names ConfigMap {name}, which the overlay does not render"
        env.update({k: {"value": v} for k, v in config_maps[name]["data"].items()})
    env.update({e["name"]: e for e in container.get("env", [])})
    return env


def secret_mounts(pod: dict, container: dict) -> dict[str, str]:
    """mountPath -> Secret name, for the container's mounts of the pod's Secret volumes."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"]: secrets[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in secrets}


def _int(minimum: int = 0) -> dict:
    return {"type": "integer", "minimum": minimum}


def cronjob_schema(pod_template: dict) -> dict:
    """batch/v1 CronJob and its JobSpec, closed over their API fields (Kubernetes 1.33); the pod template
    is the core/v1 PodTemplateSpec the KubeRay CRD embeds (a RayJob's submitterPodTemplate)."""
    job_spec = {"type": "object", "required": ["template"], "additionalProperties": False, "properties": {
        "activeDeadlineSeconds": _int(1), "backoffLimit": _int(), "backoffLimitPerIndex": _int(),
        "completionMode": {"enum": ["NonIndexed", "Indexed"]}, "completions": _int(), "managedBy": {"type": "string"},
        "manualSelector": {"type": "boolean"}, "maxFailedIndexes": _int(), "parallelism": _int(),
        "podFailurePolicy": {"type": "object"}, "podReplacementPolicy": {"enum": ["TerminatingOrFailed", "Failed"]},
        "selector": {"type": "object"}, "successPolicy": {"type": "object"}, "suspend": {"type": "boolean"},
        "ttlSecondsAfterFinished": _int(), "template": pod_template}}
    spec = {"type": "object", "required": ["schedule", "jobTemplate"], "additionalProperties": False, "properties": {
        "schedule": {"type": "string"}, "timeZone": {"type": "string"}, "startingDeadlineSeconds": _int(),
        "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]}, "suspend": {"type": "boolean"},
        "successfulJobsHistoryLimit": _int(), "failedJobsHistoryLimit": _int(),
        "jobTemplate": {"type": "object", "additionalProperties": False, "required": ["spec"],
                        "properties": {"metadata": {"type": "object"}, "spec": job_spec}}}}
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": "batch/v1"}, "kind": {"const": "CronJob"},
                           "metadata": {"type": "object"}, "spec": spec}}
