"""cluster/: KubeRay manifests against the v1.7.0 CRD schemas, the RayService against Serve's own schema,
services wiring, and the monitoring config (metric names exist; promtool when installed)."""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
import yaml
from jsonschema import Draft7Validator
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from finpulse import cli
from tests.support.manifests import OVERLAYS, rendered

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
MONITORING = CLUSTER / "base" / "monitoring"
CRDS = ROOT / "tests" / "support" / "kuberay-crds"  # vendored v1.7.0 schemas: see SOURCES.md there
CRD_FILES = {"RayCluster": "ray.io_rayclusters.v1.schema.json", "RayJob": "ray.io_rayjobs.v1.schema.json",
             "RayService": "ray.io_rayservices.v1.schema.json"}
YAML_FILES = sorted(p for p in CLUSTER.rglob("*") if p.suffix in {".yaml", ".yml"})


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs(overlay: str = "chameleon") -> list[dict]:
    """What `kubectl apply -k cluster/overlays/<overlay>` sends (the production overlay unless named)."""
    return rendered(overlay)


def ray_docs(overlay: str = "chameleon") -> list[dict]:
    return [d for d in all_docs(overlay) if d.get("apiVersion") == "ray.io/v1"]


def _strict(schema: dict) -> dict:
    """Kubernetes rejects unknown fields (kubectl's strict validation); plain JSON Schema allows them.
    Close every object that lists its properties, except where the CRD itself keeps unknown fields."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for v in schema.values():
            _strict(v)
    elif isinstance(schema, list):
        for v in schema:
            _strict(v)
    return schema


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft7Validator]:
    return {kind: Draft7Validator(_strict(json.loads((CRDS / name).read_text()))) for kind, name in CRD_FILES.items()}


def test_vendored_crd_schemas_are_the_recorded_files():
    """The schemas ship in the repo with their source and licence, byte for byte as SOURCES.md records."""
    sources = (CRDS / "SOURCES.md").read_text()
    assert "ray-project/kuberay" in sources and "v1.7.0" in sources
    assert "Apache License" in (CRDS / "LICENSE").read_text() and "Version 2.0" in (CRDS / "LICENSE").read_text()
    for name in CRD_FILES.values():
        digest = hashlib.sha256((CRDS / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in sources, f"{name} differs from the file SOURCES.md records"
        schema = json.loads((CRDS / name).read_text())
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])


def errors(validators, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validators[doc["kind"]].iter_errors(doc)]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_parses(path):
    assert docs(path), f"{path} is empty"


def test_overlays_exist():
    assert set(OVERLAYS) >= {"dev", "chameleon"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kuberay_manifests_validate_against_crds(validators, overlay):
    kinds = [d["kind"] for d in ray_docs(overlay)]
    assert sorted(set(kinds)) == ["RayCluster", "RayJob", "RayService"] and kinds.count("RayJob") >= 2
    for doc in ray_docs(overlay):
        assert errors(validators, doc) == [], doc["metadata"]["name"]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("replicas", "two"), "replicas"),
    (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0), "num-cpus"),
    (lambda d: d["spec"].__setitem__("enableInTreeAutoscaling", "yes"), "enableInTreeAutoscaling"),
    (lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("maxReplica", 3), "maxReplica"),  # typo
])
def test_validation_catches_broken_manifests(validators, mutate, needle):
    cluster = next(d for d in ray_docs() if d["kind"] == "RayCluster")
    broken = copy.deepcopy(cluster)
    mutate(broken)
    found = errors(validators, broken)
    assert found and any(needle in e for e in found), found


def test_raycluster_shape():
    rc = next(d for d in ray_docs() if d["kind"] == "RayCluster")["spec"]
    assert rc["enableInTreeAutoscaling"] is True and rc["rayVersion"] == ray.__version__
    head = rc["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265 and ports["metrics"] == int(head["rayStartParams"]["metrics-export-port"])
    groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    assert groups["gpu"]["minReplicas"] == 0  # optional: costs nothing until a GPU task asks
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == 1
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_finpulse_image_everywhere(overlay):
    """Every Ray pod and job submitter runs the FinPulse image the overlay names (the GPU group its -gpu
    build); the image is built FROM the Ray and Python these manifests and the project use."""
    kustomization = yaml.safe_load((CLUSTER / "overlays" / overlay / "kustomization.yaml").read_text())
    named = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    assert set(named) == {"finpulse", "finpulse-gpu"}
    for doc in all_docs(overlay):
        assert doc.get("spec", {}).get("rayVersion", ray.__version__) == ray.__version__
        for c in containers(doc):
            if doc.get("apiVersion") == "ray.io/v1" or "finpulse" in c["image"]:
                assert c["image"] in named.values(), (doc["metadata"]["name"], c["image"])
    assert f"ARG BASE=rayproject/ray:{ray.__version__}-py311\n" in (CLUSTER / "Dockerfile").read_text()


def _secret_mounts(pod: dict, container: dict) -> dict[str, str]:
    """mountPath -> Secret name, for the container's mounts of the pod's Secret volumes."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"]: secrets[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in secrets}


def test_credentials_only_from_secrets():
    for doc in all_docs():
        for pod in pod_specs(doc):
            for c in pod["containers"]:
                for env in c.get("env", []):
                    if not re.search(r"KEY|SECRET|PASSWORD|TOKEN", env["name"]):
                        continue
                    if env["name"].endswith("_FILE"):  # a path: it must lie in a mounted Secret
                        mounts = _secret_mounts(pod, c)
                        assert any(env["value"].startswith(f"{m}/") for m in mounts), f"{env['name']}: {mounts}"
                    else:
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{env['name']} must come from a Secret"
    aws_key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    for path in [*CLUSTER.rglob("*"), *(ROOT / "tf").rglob("*")]:
        if path.is_file():
            assert not aws_key_id.search(path.read_text(errors="ignore")), path
    assert not [d for d in all_docs() if d.get("kind") == "Secret"], "Secrets are created with kubectl, not committed"


def test_rayjobs_run_the_cli():
    """A cluster run takes the laptop's path: every RayJob runs a `finpulse` command with options it has."""
    jobs = [d for d in ray_docs() if d["kind"] == "RayJob"]
    commands = {}
    for j in jobs:
        argv = shlex.split(j["spec"]["entrypoint"])
        assert argv[0] == "finpulse", j["spec"]["entrypoint"]
        words = list(itertools.takewhile(lambda a: not a.startswith("-"), argv[1:]))  # `pipeline run`
        commands[" ".join(words)] = [a.split("=")[0] for a in argv[1 + len(words):] if a.startswith("--")]
    assert {"etl", "train-forecaster", "pipeline run"} <= set(commands)
    for command, opts in commands.items():
        help_text = CliRunner().invoke(cli.app, [*command.split(), "--help"], terminal_width=200).output
        assert "Usage:" in help_text, command
        for opt in opts:
            assert opt in help_text, f"finpulse {command} has no {opt}"
    for j in jobs:
        assert j["spec"]["clusterSelector"] == {"ray.io/cluster": "finpulse"}
        assert yaml.safe_load(j["spec"]["runtimeEnvYAML"])["working_dir"] == "/app"  # WORKDIR of cluster/Dockerfile
    assert "WORKDIR /app" in (CLUSTER / "Dockerfile").read_text()


def test_gpu_rayjob_trains_sentiment_on_the_gpu_group():
    """rayjob-train-sentiment-gpu.yaml (validated with the others above) asks for GPU workers and lets the
    autoscaler bring one up; the GPU group it lands on is pinned to GPU nodes and holds one GPU per pod."""
    (job,) = [d for d in ray_docs() if d["metadata"]["name"] == "finpulse-train-sentiment-gpu"]
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"] == {"ray.io/cluster": "finpulse"}
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["finpulse", "train-sentiment"] and "--use-gpu" in argv
    assert float(argv[argv.index("--gpu-wait") + 1]) >= 300  # a GPU node takes minutes to join
    rc = next(d for d in ray_docs() if d["kind"] == "RayCluster")["spec"]
    (gpu,) = [g for g in rc["workerGroupSpecs"] if g["groupName"] == "gpu"]
    pod = gpu["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["image"].split(":")[0].endswith("-gpu") and gpu["maxReplicas"] >= 1


def test_every_rayservice_pod_reads_api_keys_from_the_secret():
    """Gateway replicas may land on any worker: every pod mounts `finpulse-api-keys` as a folder (a
    subPath mount would never see a rotated Secret) and points FINPULSE_API_KEYS_FILE into it."""
    svc = next(d for d in ray_docs() if d["kind"] == "RayService")
    pods = pod_specs(svc)
    assert len(pods) == 3  # head, cpu, gpu
    for pod in pods:
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        mounts = _secret_mounts(pod, c)
        assert "finpulse-api-keys" in mounts.values() and not any("subPath" in m for m in c["volumeMounts"])
        mount = next(m for m, name in mounts.items() if name == "finpulse-api-keys")
        assert env["FINPULSE_API_KEYS_FILE"] == f"{mount}/api_keys.json"


def test_rayservice_serve_config_is_the_production_config():
    svc = next(d for d in ray_docs() if d["kind"] == "RayService")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(serve)
    app = schema.applications[0]
    assert app.import_path == "finpulse.serving.app:build_app"
    deps = {d.name: d for d in app.deployments}
    assert deps["SentimentModel"].ray_actor_options.num_gpus == 1
    assert {"SentimentModel", "Forecaster", "Gateway"} <= set(deps)
    assert all(d.autoscaling_config for d in app.deployments)
    production = yaml.safe_load((ROOT / "serve_configs" / "production.yaml").read_text())
    assert serve == production, "copy serve_configs/production.yaml into rayservice.yaml serveConfigV2"


def test_services_wiring():
    by_kind: dict[str, dict[str, dict]] = {}
    for d in all_docs():
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    services = by_kind["Service"]
    mlflow = containers(by_kind["Deployment"]["mlflow"])[0]
    command = " ".join(mlflow["args"])
    assert "--artifacts-destination s3://mlflow/artifacts" in command and "--serve-artifacts" in command
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in env["MLFLOW_BACKEND_STORE_URI"]["value"] and "postgres" in services
    assert by_kind["StatefulSet"]["postgres"]["spec"]["serviceName"] == "postgres"
    assert "minio" in by_kind["StatefulSet"] and "minio" in services
    # every in-cluster host:port the Ray pods are given is a Service with that port
    for doc in ray_docs():
        for c in containers(doc):
            for e in c.get("env", []):
                m = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)", e.get("value", ""))
                if m:
                    host, port = m.group(1), int(m.group(2))
                    assert port in [p["port"] for p in services[host]["spec"]["ports"]], e


# --- the retraining schedule (CronJob) -----------------------------------------------------------

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


@pytest.fixture(scope="module")
def cronjob_validator() -> Draft7Validator:
    rayjob = _strict(json.loads((CRDS / CRD_FILES["RayJob"]).read_text()))
    return Draft7Validator(cronjob_schema(rayjob["properties"]["spec"]["properties"]["submitterPodTemplate"]))


def cron_field(text: str, low: int, high: int) -> set[int]:
    """The values one field of a 5-field cron schedule names (``*``, ``a-b``, ``*/n``, lists)."""
    values: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", part)
        assert m, f"cron field {text!r}"
        start = low if m.group(1) == "*" else int(m.group(1))
        end = high if m.group(1) == "*" else int(m.group(2) or start)
        assert low <= start <= end <= high, f"cron field {text!r} outside {low}-{high}"
        values.update(range(start, end + 1, int(m.group(3) or 1)))
    return values


def retrain_docs() -> tuple[dict, dict]:
    (cron,) = [d for d in all_docs() if d["kind"] == "CronJob" and d["metadata"]["name"] == "finpulse-retrain"]
    (job,) = [d for d in ray_docs() if d["kind"] == "RayJob" and d["metadata"]["name"] == "finpulse-retrain"]
    return cron, job


def test_retrain_cronjob_validates_and_never_overlaps(cronjob_validator):
    cron, _ = retrain_docs()
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in cronjob_validator.iter_errors(cron)] == []
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"  # one turn at a time (the loop's lock is the second guard)
    minute, hour, dom, month, dow = spec["schedule"].split()
    assert cron_field(minute, 0, 59) == {17} and cron_field(hour, 0, 23) == {0, 6, 12, 18}
    assert (cron_field(dom, 1, 31), cron_field(month, 1, 12), cron_field(dow, 0, 6)) == (
        set(range(1, 32)), set(range(1, 13)), set(range(7)))
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["spec"].__setitem__("concurrencyPolicy", "Never"), "concurrencyPolicy"),
    (lambda d: d["spec"]["jobTemplate"]["spec"].__setitem__("backofLimit", 1), "backofLimit"),  # typo
    (lambda d: containers(d)[0].__setitem__("commands", ["ray"]), "commands"),  # typo, inside the pod
    (lambda d: containers(d)[0]["resources"]["limits"].__setitem__("cpu", ["1"]), "cpu"),
])
def test_cronjob_validation_catches_broken_manifests(cronjob_validator, mutate, needle):
    broken = copy.deepcopy(retrain_docs()[0])
    mutate(broken)
    found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in cronjob_validator.iter_errors(broken)]
    assert found and any(needle in e for e in found), found


def test_retrain_cronjob_submits_the_retrain_rayjob():
    """The CronJob's `ray job submit` parses with this Ray's own CLI and submits exactly the RayJob's
    entrypoint and runtime env, to the job API of the cluster the RayJob selects."""
    from ray.dashboard.modules.job.cli import submit

    cron, job = retrain_docs()
    (c,) = containers(cron)
    assert c["command"][:3] == ["ray", "job", "submit"] and "args" not in c
    params = submit.make_context("submit", list(c["command"][3:])).params
    assert list(params["entrypoint"]) == shlex.split(job["spec"]["entrypoint"])
    assert json.loads(params["runtime_env_json"]) == yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert params["entrypoint_num_cpus"] == job["spec"]["entrypointNumCpus"] and not params["no_wait"]
    assert c["image"] == containers(job)[0]["image"]  # the same (FinPulse) image uploads the same /app
    host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", params["address"]).groups()
    (svc,) = [d for d in all_docs() if d["kind"] == "Service" and d["metadata"]["name"] == host]
    assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
    assert svc["spec"]["selector"] == {**job["spec"]["clusterSelector"], "ray.io/node-type": "head"}
    assert cron["metadata"]["namespace"] == job["metadata"]["namespace"] == svc["metadata"]["namespace"]


# --- monitoring ----------------------------------------------------------------------------------

RAY_SITE = Path(ray.__file__).parent
METRIC_RE = re.compile(r"\b(ray_[a-z0-9_]+|finpulse:[a-z0-9_:]+)")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def finpulse_metric_names() -> set[str]:
    """Prometheus names of the custom metrics in finpulse/monitoring/metrics.py, as Ray exports them."""
    path = ROOT / "finpulse" / "monitoring" / "metrics.py"
    if not path.exists():
        return set()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            base = f"ray_{node.args[0].value}"
            if node.func.id == "Counter":
                names.add(f"{base}_total")
            elif node.func.id == "Histogram":
                names.update(base + s for s in HIST_SUFFIXES)
            elif node.func.id == "Gauge":
                names.add(base)
    return names


def builtin_metric_names() -> set[str]:
    """Names Ray itself uses: its own Grafana panels plus every serve_* metric defined in Serve."""
    names = set()
    for f in (RAY_SITE / "dashboard" / "modules" / "metrics" / "dashboards").glob("*.py"):
        names.update(re.findall(r"ray_[a-z0-9_]+", f.read_text()))
    for f in (RAY_SITE / "serve").rglob("*.py"):
        for n in re.findall(r'"(serve_[a-z0-9_]+)"', f.read_text()):
            names.update({f"ray_{n}", f"ray_{n}_total", *(f"ray_{n}{s}" for s in HIST_SUFFIXES)})
    return names


def recorded_names() -> set[str]:
    rules = yaml.safe_load((MONITORING / "rules" / "finpulse-alerts.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    finpulse = finpulse_metric_names()
    assert finpulse, "finpulse/monitoring/metrics.py defines no metrics: the name checks below would be vacuous"
    return finpulse | builtin_metric_names() | recorded_names()


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in (MONITORING / "grafana" / "dashboards").glob("*.json"):
        dash = json.loads(path.read_text())
        exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((MONITORING / "rules" / "finpulse-alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_builtin_names_seen():
    # guards the name harvesting itself: if Ray renames these, the check below would be vacuous
    assert {"ray_serve_num_http_requests_total", "ray_serve_http_request_latency_ms_bucket",
            "ray_serve_deployment_replica_healthy"} <= builtin_metric_names()


def test_dashboard_and_rules_use_existing_metrics(known_metrics):
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    used = {m for e in exprs + rule_exprs() for m in METRIC_RE.findall(e)}
    assert used - known_metrics == set()
    finpulse = finpulse_metric_names()
    # the dashboard shows every custom metric the serving layer records
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in finpulse}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in METRIC_RE.findall(e)}
    assert families <= shown


def test_grafana_provisioning_points_at_the_dashboards():
    prov = MONITORING / "grafana" / "provisioning"
    uid = yaml.safe_load((prov / "datasources.yaml").read_text())["datasources"][0]["uid"]
    dash = json.loads((MONITORING / "grafana" / "dashboards" / "finpulse.json").read_text())
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {uid}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH (Debian package `prometheus`)")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_rules_and_rule_tests():
    r = promtool("check", "rules", "rules/finpulse-alerts.yml", cwd=MONITORING)
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("test", "rules", "rules/finpulse-alerts.test.yml", cwd=MONITORING)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-local.yml"])
def test_promtool_config(name, tmp_path):
    r = promtool("check", "config", name, cwd=MONITORING)
    if r.returncode != 0 and "kubernetes_sd_configs not found" in r.stdout + r.stderr:
        # Debian builds Prometheus without Kubernetes discovery; check the rest with static targets.
        cfg = yaml.safe_load((MONITORING / name).read_text())
        for job in cfg["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
        shutil.copytree(MONITORING / "rules", tmp_path / "rules")
        (tmp_path / name).write_text(yaml.safe_dump(cfg))
        r = promtool("check", "config", name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
