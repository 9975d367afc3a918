"""cluster/: the rendered overlays against the KubeRay v1.7.0 CRD schemas, images, credentials, services
wiring, the retraining CronJob, and the monitoring config (metric names exist; promtool when installed).
The Ray topology (one cluster, every job, Serve, sizing, Ingress) is tests/unit/test_cluster_ray.py;
kubernetes-validate on the core resources is tests/unit/test_cluster_kubevalidate.py."""

from __future__ import annotations

import ast
import copy
import hashlib
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

from tests.support.kube import (
    CRD_FILES,
    CRDS,
    container_env,
    containers,
    crd_schema,
    crd_validators,
    cronjob_schema,
    pod_specs,
    schema_errors,
    secret_mounts,
)
from tests.support.manifests import OVERLAYS, rendered

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
MONITORING = CLUSTER / "base" / "monitoring"
YAML_FILES = sorted(p for p in CLUSTER.rglob("*") if p.suffix in {".yaml", ".yml"})


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs(overlay: str = "chameleon") -> list[dict]:
    """What `kubectl apply -k cluster/overlays/<overlay>` sends (the production overlay unless named)."""
    return rendered(overlay)


def ray_docs(overlay: str = "chameleon") -> list[dict]:
    return [d for d in all_docs(overlay) if d.get("apiVersion") == "ray.io/v1"]


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft7Validator]:
    return crd_validators()


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
    return schema_errors(validators[doc["kind"]], doc)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_parses(path):
    assert docs(path), f"{path} is empty"


def test_overlays_exist():
    assert set(OVERLAYS) >= {"dev", "chameleon"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kuberay_manifests_validate_against_crds(validators, overlay):
    kinds = [d["kind"] for d in ray_docs(overlay)]
    assert sorted(set(kinds)) == ["RayCluster", "RayJob"] and kinds.count("RayCluster") == 1  # one cluster
    assert kinds.count("RayJob") >= 8
    for doc in ray_docs(overlay):
        assert errors(validators, doc) == [], doc["metadata"]["name"]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("replicas", "two"), "replicas"),
    (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0), "num-cpus"),
    (lambda d: d["spec"].__setitem__("enableInTreeAutoscaling", "yes"), "enableInTreeAutoscaling"),
    (lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("maxReplica", 3), "maxReplica"),  # typo
    (lambda d: d["spec"]["gcsFaultToleranceOptions"].__setitem__("redisAdress", "redis:6379"), "redisAdress"),
    (lambda d: d["spec"]["authOptions"].__setitem__("mode", "tokens"), "mode"),
])
def test_validation_catches_broken_manifests(validators, mutate, needle):
    cluster = next(d for d in ray_docs() if d["kind"] == "RayCluster")
    broken = copy.deepcopy(cluster)
    mutate(broken)
    found = errors(validators, broken)
    assert found and any(needle in e for e in found), found


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


def test_credentials_only_from_secrets():
    rendered_docs = all_docs()
    for doc in rendered_docs:
        for pod in pod_specs(doc):
            for c in pod["containers"]:
                for name, env in container_env(c, rendered_docs).items():
                    if not re.search(r"KEY|SECRET|PASSWORD|TOKEN", name):
                        continue
                    if name.endswith("_FILE"):  # a path: it must lie in a mounted Secret
                        mounts = secret_mounts(pod, c)
                        assert any(env["value"].startswith(f"{m}/") for m in mounts), f"{name}: {mounts}"
                    else:
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{name} must come from a Secret"
    aws_key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    for path in [*CLUSTER.rglob("*"), *(ROOT / "tf").rglob("*")]:
        if path.is_file():
            assert not aws_key_id.search(path.read_text(errors="ignore")), path
    assert not [d for d in rendered_docs if d.get("kind") == "Secret"], "Secrets are created with kubectl, not committed"


def test_services_wiring():
    rendered_docs = all_docs()
    by_kind: dict[str, dict[str, dict]] = {}
    for d in rendered_docs:
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
    # every in-cluster host:port the Ray pods are given is a Service with that port (the monitoring hosts:
    # the test below; the browser-side Grafana iframe host is not an in-cluster address)
    for host, port, name in ray_pod_addresses(rendered_docs):
        if host not in MONITORING_HOSTS:
            assert host in services, f"{name}: no Service {host}"
            assert port in [p["port"] for p in services[host]["spec"]["ports"]], name


MONITORING_HOSTS = {"prometheus", "grafana"}


def ray_pod_addresses(rendered_docs: list[dict]) -> set[tuple[str, int, str]]:
    """(host, port, variable) of every http://host:port value in a Ray container's environment."""
    found = set()
    for doc in rendered_docs:
        if doc.get("apiVersion") != "ray.io/v1":
            continue
        for c in containers(doc):
            for name, e in container_env(c, rendered_docs).items():
                m = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)", e.get("value", ""))
                if m and name != "RAY_GRAFANA_IFRAME_HOST":
                    found.add((m.group(1), int(m.group(2)), name))
    return found


def test_head_metrics_hosts_are_monitoring_services():
    rendered_docs = all_docs()
    services = {d["metadata"]["name"]: d for d in rendered_docs if d["kind"] == "Service"}
    wanted = {(h, p) for h, p, _ in ray_pod_addresses(rendered_docs) if h in MONITORING_HOSTS}
    assert wanted == {("prometheus", 9090), ("grafana", 3000)}  # RAY_PROMETHEUS_HOST, RAY_GRAFANA_HOST
    for host, port in wanted:
        assert port in [p["port"] for p in services[host]["spec"]["ports"]], host


# --- the retraining schedule (CronJob) -----------------------------------------------------------

@pytest.fixture(scope="module")
def cronjob_validator() -> Draft7Validator:
    rayjob = crd_schema("RayJob")
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
