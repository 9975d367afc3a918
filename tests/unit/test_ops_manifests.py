"""cluster/ operations, as rendered by kustomize: monitoring that runs (the mounted configs are the repo's
files and pass promtool/amtool, every Service they name exists, Grafana's mounts are where its
provisioning looks), data on the Cinder volume (chameleon), and the backup CronJobs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from typer.testing import CliRunner

from finpulse import cli
from finpulse.config import Settings
from finpulse.ops.backup import PG_DUMP_FLAGS
from finpulse.ops.ray_dashboards import DASHBOARDS, write_ray_dashboards
from finpulse.ops.stores import BackupSettings
from tests.support.kube import CRD_FILES, CRDS, containers, cronjob_schema, strict
from tests.support.manifests import OVERLAYS, rendered

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "cluster" / "base" / "monitoring"
GENERATED = {"prometheus-config": "prometheus.yml", "prometheus-rules": "rules/finpulse-alerts.yml",
             "alertmanager-config": "alertmanager.yml", "grafana-datasources": "grafana/provisioning/datasources.yaml",
             "grafana-dashboard-providers": "grafana/provisioning/dashboards.yaml",
             "grafana-dashboards-finpulse": "grafana/dashboards/finpulse.json"}


def by_kind(overlay: str) -> dict[str, dict[str, dict]]:
    found: dict[str, dict[str, dict]] = {}
    for d in rendered(overlay):
        found.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return found


def configmap(kinds: dict, base: str) -> dict:
    """The generated ConfigMap ``base-<hash>``."""
    (cm,) = [c for name, c in kinds["ConfigMap"].items() if re.fullmatch(rf"{base}-[a-z0-9]{{10}}", name)]
    return cm


def pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def mounts(container: dict) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def service_ports(kinds: dict, host: str) -> list[int]:
    svc = kinds["Service"].get(host)
    assert svc is not None, f"no Service {host}"
    return [p["port"] for p in svc["spec"]["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitoring_configmaps_are_the_repo_files(overlay):
    kinds = by_kind(overlay)
    for base, rel in GENERATED.items():
        assert configmap(kinds, base)["data"] == {Path(rel).name: (MONITORING / rel).read_text()}, base


def lay_out_projected(volume: dict, kinds: dict, into: Path) -> None:
    """Write a projected ConfigMap volume's files as the kubelet would."""
    for source in volume["projected"]["sources"]:
        data = kinds["ConfigMap"][source["configMap"]["name"]]["data"]
        for item in source["configMap"]["items"]:
            (into / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (into / item["path"]).write_text(data[item["key"]])


def test_prometheus_runs_with_its_config_rules_rbac_and_volume(tmp_path):
    kinds = by_kind("chameleon")
    sts = kinds["StatefulSet"]["prometheus"]
    (c,) = pod(sts)["containers"]
    args = dict(a.split("=", 1) for a in c["args"] if "=" in a)
    config_dir = Path(args["--config.file"]).parent
    volume = next(v for v in pod(sts)["volumes"] if v["name"] == mounts(c)[str(config_dir)])
    lay_out_projected(volume, kinds, tmp_path)
    cfg = yaml.safe_load((tmp_path / Path(args["--config.file"]).name).read_text())
    for rule_file in cfg["rule_files"]:  # relative to the config file, as mounted
        assert (tmp_path / rule_file).is_file(), rule_file
    assert mounts(c)[args["--storage.tsdb.path"]] in [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    # discovery: every role the config uses, in every namespace it names, is granted to the pod's account
    sa = pod(sts)["serviceAccountName"]
    sds = [sd for job in cfg["scrape_configs"] for sd in job.get("kubernetes_sd_configs", [])]
    assert sds and {sd["role"] for sd in sds} == {"pod"}
    for sd in sds:
        for ns in sd["namespaces"]["names"]:
            (binding,) = [b for b in kinds["RoleBinding"].values() if b["metadata"]["namespace"] == ns
                          and {"kind": "ServiceAccount", "name": sa, "namespace": sts["metadata"]["namespace"]}
                          in b["subjects"]]
            role = kinds["Role"][binding["roleRef"]["name"]]
            assert role["metadata"]["namespace"] == ns
            assert any("pods" in r["resources"] and {"get", "list", "watch"} <= set(r["verbs"]) for r in role["rules"])
    promtool_check(tmp_path, Path(args["--config.file"]).name)


def promtool_check(folder: Path, name: str) -> None:
    """promtool check config; Debian's promtool lacks Kubernetes discovery, so those jobs get static targets."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH (Debian package `prometheus`; .ci/run installs it)"
    r = subprocess.run([promtool, "check", "config", name], cwd=folder, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "kubernetes_sd_configs not found" in r.stdout + r.stderr:
        cfg = yaml.safe_load((folder / name).read_text())
        for job in cfg["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
        (folder / name).write_text(yaml.safe_dump(cfg))
        r = subprocess.run([promtool, "check", "config", name], cwd=folder, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 1 rule files found" in r.stdout + r.stderr


def amtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    found = shutil.which("amtool")
    assert found, "amtool not on PATH (Debian package `prometheus-alertmanager`; .ci/run installs it)"
    return subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_alertmanager_config_validates_and_routes_every_alert(tmp_path):
    kinds = by_kind("chameleon")
    dep = kinds["Deployment"]["alertmanager"]
    (c,) = pod(dep)["containers"]
    config_file = Path(next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--config.file=")))
    volumes = {v["name"]: v for v in pod(dep)["volumes"]}
    cm = kinds["ConfigMap"][volumes[mounts(c)[str(config_file.parent)]]["configMap"]["name"]]
    cfg = yaml.safe_load(cm["data"][config_file.name])
    # the webhook URL is a file in the mounted Secret, never in the repo
    (hook,) = [w for r in cfg["receivers"] for w in r.get("webhook_configs", [])]
    url_file = Path(hook["url_file"])
    secret = volumes[mounts(c)[str(url_file.parent)]]["secret"]
    assert url_file.name in [i["path"] for i in secret["items"]] and "url" not in hook
    # Debian's amtool (0.25) predates url_file (Alertmanager >= 0.26, the pinned image is newer): it checks
    # the rest with a url in its place
    version = amtool("--version", cwd=tmp_path).stdout + amtool("--version", cwd=tmp_path).stderr
    if re.search(r"version 0\.(1\d|2[0-5])\.", version):
        hook["url"] = "http://webhook.invalid/"
        del hook["url_file"]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
    r = amtool("check-config", "alertmanager.yml", cwd=tmp_path)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    rules = yaml.safe_load((MONITORING / "rules" / "finpulse-alerts.yml").read_text())
    alerts = [rule for g in rules["groups"] for rule in g["rules"] if "alert" in rule]
    severities = {a["labels"]["severity"] for a in alerts}
    assert severities == {"page", "ticket"}
    for severity in severities:
        r = amtool("config", "routes", "test", "--config.file=alertmanager.yml", "alertname=X", f"severity={severity}",
                   cwd=tmp_path)
        assert r.stdout.strip() == "finpulse-webhook", r.stdout + r.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_the_monitoring_configs_name_exists(overlay):
    kinds = by_kind(overlay)
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    datasources = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources.yaml").read_text())
    targets += [re.fullmatch(r"https?://(.+)", d["url"]).group(1) for d in datasources["datasources"]]
    assert {"minio:9000", "alertmanager:9093", "prometheus:9090"} <= set(targets)
    for target in targets:
        host, port = target.split(":")
        assert int(port) in service_ports(kinds, host), target
    assert 3000 in service_ports(kinds, "grafana")  # RAY_GRAFANA_HOST on the Ray head


def test_grafana_mounts_are_where_its_provisioning_looks():
    kinds = by_kind("chameleon")
    dep = kinds["Deployment"]["grafana"]
    (c,) = pod(dep)["containers"]
    (init,) = pod(dep)["initContainers"]
    volumes = {v["name"]: v for v in pod(dep)["volumes"]}
    env = {e["name"]: e for e in c["env"]}
    provisioning = env["GF_PATHS_PROVISIONING"]["value"]

    def configmap_keys(path: str) -> set[str]:
        return set(kinds["ConfigMap"][volumes[mounts(c)[path]]["configMap"]["name"]]["data"])

    assert configmap_keys(f"{provisioning}/datasources") == {"datasources.yaml"}
    assert configmap_keys(f"{provisioning}/dashboards") == {"dashboards.yaml"}
    providers = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards.yaml").read_text())["providers"]
    paths = {p["name"]: p["options"]["path"] for p in providers}
    assert configmap_keys(paths["finpulse"]) == {p.name for p in (MONITORING / "grafana" / "dashboards").glob("*.json")}
    # Ray's dashboards: written by the initContainer into the volume Grafana reads at the ray provider's path
    assert init["command"][:3] == ["python", "-m", "finpulse.ops.ray_dashboards"] and init["command"][3] == paths["ray"]
    assert mounts(init)[paths["ray"]] == mounts(c)[paths["ray"]] and "emptyDir" in volumes[mounts(c)[paths["ray"]]]
    assert init["image"] == containers(kinds["RayCluster"]["finpulse"])[0]["image"]  # the cluster's Ray
    # the Ray dashboard's Metrics tab embeds panels in iframes, without a Grafana login
    assert env["GF_SECURITY_ALLOW_EMBEDDING"]["value"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"]["value"] == "Viewer"
    password = volumes[mounts(c)[str(Path(env["GF_SECURITY_ADMIN_PASSWORD__FILE"]["value"]).parent)]]
    assert password["secret"]["secretName"] == "finpulse-grafana"  # pragma: allowlist secret - a Secret name


def test_ray_dashboards_are_the_ones_the_metrics_tab_embeds(tmp_path):
    from ray.dashboard.modules.metrics import metrics_head
    from ray.dashboard.modules.metrics.dashboards import (
        data_dashboard_panels,
        default_dashboard_panels,
        serve_dashboard_panels,
        serve_deployment_dashboard_panels,
        train_dashboard_panels,
    )

    uids = write_ray_dashboards(tmp_path)
    expected = {m.__name__.rsplit(".", 1)[1].removesuffix("_dashboard_panels"): getattr(m, f"{n}_dashboard_config")
                for m, n in ((data_dashboard_panels, "data"), (default_dashboard_panels, "default"),
                             (serve_dashboard_panels, "serve"),
                             (serve_deployment_dashboard_panels, "serve_deployment"),
                             (train_dashboard_panels, "train"))}
    assert set(DASHBOARDS) == set(expected)
    for name in DASHBOARDS:
        dash = json.loads((tmp_path / f"{name}_grafana_dashboard.json").read_text())
        assert dash["uid"] == uids[name] == expected[name].default_uid and dash["panels"]
    # the tab selects the datasource by name: the provisioned one must carry Ray's default name
    datasources = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources.yaml").read_text())
    assert datasources["datasources"][0]["name"] == metrics_head.DEFAULT_PROMETHEUS_NAME


# --- storage: the chameleon overlay keeps the data on the Cinder volume -----------------------------

ON_VOLUME = ("minio", "postgres", "nats")
GI = 1024**3


def gibibytes(quantity: str) -> float:
    m = re.fullmatch(r"(\d+)(Gi|Mi|G)", quantity)
    assert m, quantity
    return int(m.group(1)) * {"Gi": 1, "Mi": 1 / 1024, "G": 1e9 / GI}[m.group(2)]


def test_chameleon_keeps_the_data_on_the_cinder_volume():
    kinds = by_kind("chameleon")
    (sc,) = kinds["StorageClass"].values()
    assert sc["provisioner"] == "kubernetes.io/no-provisioner" and sc["volumeBindingMode"] == "WaitForFirstConsumer"
    pvs = kinds["PersistentVolume"]
    total = 0.0
    for name in ON_VOLUME:
        sts = kinds["StatefulSet"][name]
        assert pod(sts)["nodeSelector"] == {"finpulse/storage": "true"}
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == sc["metadata"]["name"]
        (pv,) = [pv for pv in pvs.values() if pv["spec"]["claimRef"] == {
            "namespace": sts["metadata"]["namespace"], "name": f"{claim['metadata']['name']}-{name}-0"}]
        spec = pv["spec"]
        assert spec["storageClassName"] == sc["metadata"]["name"] and spec["persistentVolumeReclaimPolicy"] == "Retain"
        assert spec["capacity"]["storage"] == claim["spec"]["resources"]["requests"]["storage"]
        assert spec["local"]["path"] == f"/mnt/finpulse/{name}"
        (term,) = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [{"key": "finpulse/storage", "operator": "In", "values": ["true"]}]
        total += gibibytes(spec["capacity"]["storage"])
    assert len(pvs) == len(ON_VOLUME)
    assert total <= 0.95 * gibibytes("100G"), f"{total} GiB on the 100 GB volume leaves no headroom"


def test_dev_keeps_k3s_default_storage():
    kinds = by_kind("dev")
    assert "PersistentVolume" not in kinds and "StorageClass" not in kinds
    for name in ON_VOLUME:
        sts = kinds["StatefulSet"][name]
        assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]  # k3s's local-path
        assert "nodeSelector" not in pod(sts)


# --- backups -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cronjob_validator() -> Draft7Validator:
    rayjob = strict(json.loads((CRDS / CRD_FILES["RayJob"]).read_text()))
    return Draft7Validator(cronjob_schema(rayjob["properties"]["spec"]["properties"]["submitterPodTemplate"]))


def backup_cronjobs(overlay: str = "chameleon") -> dict[str, dict]:
    return {n: d for n, d in by_kind(overlay)["CronJob"].items() if n.startswith("finpulse-backup-")}


def finpulse_command_runs(argv: list[str]) -> None:
    """A `finpulse ...` argv names a command that exists, with options it has."""
    words = [a for a in argv[1:3] if not a.startswith("-")]
    help_text = CliRunner().invoke(cli.app, [*words, "--help"], terminal_width=200).output
    assert "Usage:" in help_text, argv
    for opt in [a for a in argv if a.startswith("--")]:
        assert opt in help_text, f"finpulse {' '.join(words)} has no {opt}"


def env_names_are_settings(container: dict) -> None:
    """Every FINPULSE_* variable the container gets is a field of the settings that read it (no typos)."""
    fields = {f"FINPULSE_{k.upper()}" for k in Settings.model_fields}
    fields |= {f"FINPULSE_BACKUP_{k.upper()}" for k in BackupSettings.model_fields}
    for e in container["env"]:
        if e["name"].startswith("FINPULSE_"):
            assert e["name"] in fields, e["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backup_cronjobs_validate_and_run_finpulse_backup(cronjob_validator, overlay):
    jobs = backup_cronjobs(overlay)
    assert set(jobs) == {"finpulse-backup-postgres", "finpulse-backup-objects"}
    for cron in jobs.values():
        assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in cronjob_validator.iter_errors(cron)] == []
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        finpulse_command_runs(c["command"])
        env_names_are_settings(c)
        secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
        assert "finpulse-backup" in secrets


def test_postgres_backup_dumps_with_the_servers_pg_dump_and_the_packages_flags():
    kinds = by_kind("chameleon")
    cron = backup_cronjobs()["finpulse-backup-postgres"]
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (init,), (upload,) = spec["initContainers"], spec["containers"]
    server = pod(kinds["StatefulSet"]["postgres"])["containers"][0]
    assert init["image"] == server["image"]  # pg_dump as new as the server
    argv = init["command"]
    assert argv[0] == "pg_dump" and tuple(a for a in argv[1:] if not a.startswith(("--file=", "--dbname="))) == PG_DUMP_FLAGS
    dump = next(a.split("=", 1)[1] for a in argv if a.startswith("--file="))
    assert upload["command"][upload["command"].index("--from-file") + 1] == dump
    staging = mounts(init)[str(Path(dump).parent)]
    assert mounts(upload)[str(Path(dump).parent)] == staging
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == staging)  # never the Cinder volume
    env = {e["name"]: e for e in init["env"]}
    assert env["PGHOST"]["value"] in kinds["Service"] and int(env["PGPORT"]["value"]) in service_ports(kinds, "postgres")
    assert "$(PGDATABASE)" in argv[-1] and "$(PGDATABASE)" in shlex.join(upload["command"])


def test_object_backup_mirrors_the_buckets_minio_holds():
    kinds = by_kind("chameleon")
    (c,) = backup_cronjobs()["finpulse-backup-objects"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env["FINPULSE_S3_ENDPOINT_URL"]).groups()
    assert int(port) in service_ports(kinds, host)
    made = " ".join(containers(kinds["Job"]["minio-buckets"])[0]["args"])  # the buckets MinIO is given
    assert {f"finpulse/{b}" for b in env["FINPULSE_BACKUP_BUCKETS"].split(",")} <= set(made.split())


def test_restore_procedure_uses_commands_that_exist():
    """cluster/BACKUP.md: every `finpulse backup ...` it tells a person to run exists with those options,
    and its in-pod pg_restore restores as `finpulse backup pg-restore` does."""
    from finpulse.ops.backup import PG_RESTORE_FLAGS

    text = (ROOT / "cluster" / "BACKUP.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(m) for m in re.findall(r"finpulse backup [a-z-]+[^\n`|&]*", text)]
    assert {c[2] for c in commands} >= {"pg-dump", "list", "fetch", "mirror", "pg-restore"}
    for argv in commands:
        finpulse_command_runs([a for a in argv if not a.startswith("<")])
    (restore,) = re.findall(r"pg_restore (--[^']*?) -U", text)
    assert tuple(restore.split()) == PG_RESTORE_FLAGS
