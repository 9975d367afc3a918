"""The Ray side of cluster/ as rendered by the overlays: one RayCluster that runs every batch job (a RayJob
each, running `finpulse ...`) and the Serve app (deployed by a RayJob), API keys, token auth, head fault
tolerance on Redis, sizes that fit Serve's GPU replicas next to the jobs, and the Ingress in front."""

from __future__ import annotations

import itertools
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path

import pytest
import typer
import yaml
from ray.serve.schema import ServeDeploySchema

from finpulse import cli
from tests.support.kube import container_env, containers, index, pod_specs, secret_mounts
from tests.support.manifests import OVERLAYS, rendered

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "cluster" / "Dockerfile").read_text()
PRODUCTION = ROOT / "serve_configs" / "production.yaml"
SERVE_DEPLOY = "finpulse-serve-deploy"
# Commands that are not batch jobs, and why (a new command must get a RayJob or a line here).
NOT_BATCH_JOBS = {
    "dashboard": "an interactive Streamlit server, run by a person",
    "manifest": "prints the latest ETL manifest: a query, not a job",
    "broker": "a NATS server: the cluster runs NATS from cluster/base/services",
    "replay": "a demo/load driver that streams a corpus into the live feed, run by a person",
    "eval-sentiment": "needs PhraseBank, which is non-commercial and never ships in the image",
    "serve": "owns a Ray and serves until Ctrl-C; the cluster deploys with the RayJob finpulse-serve-deploy",
    "stream run": "a long-running service (the live path), not a job that ends",
    **{f"ingest {c}": "a long-running poller (the live path), not a job that ends" for c in ("prices", "x")},
    "tune-report": "prints a sweep's leaderboard from the Ray storage path: a query, not a job",
    "pipeline bootstrap": "seeds the laptop demo from embedded data; the cluster runs the stage RayJobs",
    **{f"keys {c}": "edits the local api_keys.json that becomes the Secret finpulse-api-keys"
       for c in ("create", "list", "revoke")},
    **{f"canary {c}": "an operation on the running app (by a person or `finpulse pipeline run`)"
       for c in ("set", "promote", "rollback", "status", "soak")},
    **{f"backup {c}": "storage operations outside Ray: CronJobs finpulse-backup-* (services/backup.yaml) and the "
       "restore steps in cluster/BACKUP.md" for c in ("pg-dump", "pg-restore", "fetch", "mirror", "list")},
}


def ray(overlay: str = "chameleon") -> tuple[dict, dict[str, dict]]:
    """The overlay's RayCluster spec and its RayJobs by name."""
    docs = rendered(overlay)
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    return cluster, {d["metadata"]["name"]: d for d in docs if d["kind"] == "RayJob"}


def argv(job: dict) -> list[str]:
    return shlex.split(job["spec"]["entrypoint"])


def command_words(words: list[str]) -> str:
    """`finpulse pipeline run --quiet` -> 'pipeline run'."""
    return " ".join(itertools.takewhile(lambda a: not a.startswith("-"), words[1:]))


def click_command(name: str):
    command = typer.main.get_command(cli.app)
    for word in name.split():
        command = command.commands[word]
    return command


def leaf_commands(group, prefix: str = "") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's own click)
            found |= leaf_commands(command, f"{prefix}{name} ")
        else:
            found.add(prefix + name)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rayjob_runs_on_the_one_cluster(overlay):
    """KubeRay finds a clusterSelector's cluster by NAME (the value of ray.io/cluster): a RayService's cluster
    has a generated name, so jobs and Serve share the RayCluster `finpulse` (cluster/README.md)."""
    cluster, jobs = ray(overlay)
    assert cluster["metadata"]["name"] == "finpulse" and jobs
    assert not [d for d in rendered(overlay) if d["kind"] == "RayService"]
    for name, job in jobs.items():
        spec = job["spec"]
        assert spec["clusterSelector"] == {"ray.io/cluster": "finpulse"}, name
        # what KubeRay refuses in clusterSelector mode
        assert "rayClusterSpec" not in spec and not spec.get("suspend") and not spec.get("backoffLimit"), name
        assert spec.get("submissionMode", "K8sJobMode") != "SidecarMode", name
        assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == "/app"  # WORKDIR of cluster/Dockerfile
        assert spec["entrypointNumCpus"] >= 1, name  # the head has num-cpus 0: drivers need a worker CPU
    assert "WORKDIR /app" in DOCKERFILE


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploying_runs_no_job(overlay):
    """Creating a RayJob runs it: the deploy (`-l 'finpulse/run!=on-demand'`) leaves every RayJob out and
    keeps everything else; one job is picked by its unique `finpulse/job` label (cluster/README.md)."""
    docs = rendered(overlay)
    on_demand = [d for d in docs if d["metadata"].get("labels", {}).get("finpulse/run") == "on-demand"]
    assert sorted(d["metadata"]["name"] for d in on_demand) == sorted(ray(overlay)[1])
    jobs = [d["metadata"]["labels"]["finpulse/job"] for d in on_demand]
    assert len(set(jobs)) == len(jobs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayjobs_run_the_cli(overlay):
    """A cluster run takes the laptop's path: every RayJob but the Serve deploy runs a `finpulse` command
    with options it has."""
    _, jobs = ray(overlay)
    for name, job in jobs.items():
        words = argv(job)
        if name == SERVE_DEPLOY:
            continue
        assert words[0] == "finpulse", job["spec"]["entrypoint"]
        command = command_words(words)
        params = {o for p in click_command(command).params for o in p.opts + p.secondary_opts}
        for opt in (a.split("=")[0] for a in words[1:] if a.startswith("--")):
            assert opt in params, f"finpulse {command} has no {opt}"


def test_every_batch_command_has_a_rayjob():
    _, jobs = ray("chameleon")
    with_jobs = {command_words(argv(j)) for n, j in jobs.items() if n != SERVE_DEPLOY}
    every = leaf_commands(typer.main.get_command(cli.app))
    assert not with_jobs & set(NOT_BATCH_JOBS), "a command with a RayJob is also listed as not a job"
    assert every - with_jobs - set(NOT_BATCH_JOBS) == set(), "give these commands a RayJob or a reason"
    assert set(NOT_BATCH_JOBS) - every == set(), "NOT_BATCH_JOBS names commands the CLI no longer has"
    assert {"etl", "score", "train-sentiment", "train-forecaster", "tune", "evaluate", "promote",
            "pipeline run"} <= with_jobs


def test_serve_deploy_rayjob_deploys_the_production_config():
    """`serve deploy` (parsed by this Ray's own CLI) PUTs serve_configs/production.yaml from the image to the
    cluster's dashboard and returns; that config validates with Serve's schema and serves on the port the
    finpulse-serve Service targets on the head."""
    from ray.serve.scripts import deploy

    cluster, jobs = ray()
    words = argv(jobs[SERVE_DEPLOY])
    assert words[:2] == ["serve", "deploy"]
    params = deploy.make_context("deploy", words[2:]).params
    assert params["config_or_import_path"] == "serve_configs/production.yaml" and PRODUCTION.is_file()
    assert "COPY --chown=ray:users serve_configs ./serve_configs" in DOCKERFILE
    services = index(rendered("chameleon"))["Service"]
    host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", params["address"]).groups()
    assert services[host]["spec"]["selector"] == {"ray.io/cluster": "finpulse", "ray.io/node-type": "head"}
    assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]]
    serve = yaml.safe_load(PRODUCTION.read_text())
    app = ServeDeploySchema.model_validate(serve).applications[0]
    assert app.import_path == "finpulse.serving.app:build_app"
    deps = {d.name: d for d in app.deployments}
    assert {"SentimentModel", "Forecaster", "Gateway"} <= set(deps) and all(d.autoscaling_config for d in deps.values())
    assert deps["SentimentModel"].ray_actor_options.num_gpus == 1
    (api,) = services["finpulse-serve"]["spec"]["ports"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert api["targetPort"] == serve["http_options"]["port"] == {p["name"]: p["containerPort"] for p in head["ports"]}["serve"]
    assert services["finpulse-serve"]["spec"]["selector"] == services[host]["spec"]["selector"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_ray_pod_reads_api_keys_from_the_secret(overlay):
    """Gateway replicas may land on any pod: each mounts `finpulse-api-keys` as a folder (a subPath mount
    would never see a rotated Secret) and FINPULSE_API_KEYS_FILE points into it."""
    cluster, _ = ray(overlay)
    docs = rendered(overlay)
    pods = pod_specs(cluster)
    assert len(pods) == 3  # head, cpu, gpu
    for pod in pods:
        (c,) = pod["containers"]
        env = container_env(c, docs)
        mounts = secret_mounts(pod, c)
        assert "finpulse-api-keys" in mounts.values() and not any("subPath" in m for m in c["volumeMounts"])
        mount = next(m for m, name in mounts.items() if name == "finpulse-api-keys")
        assert env["FINPULSE_API_KEYS_FILE"]["value"] == f"{mount}/api_keys.json"
        assert env["FINPULSE_RAY_STORAGE_PATH"]["value"] == "s3://finpulse/ray_results"  # shared checkpoints
    head = container_env(cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0], docs)
    assert head["RAY_PROMETHEUS_HOST"]["value"] == "http://prometheus:9090"
    assert head["RAY_GRAFANA_HOST"]["value"] == "http://grafana:3000"


def test_token_auth_reaches_every_client():
    """Ray 2.60 turns token auth on: the operator hands the RayCluster's token to Ray pods and RayJob
    submitters; the CronJob's own submitter reads the same Secret and sets the same mode."""
    cluster, _ = ray()
    auth = cluster["spec"]["authOptions"]
    assert auth["mode"] == "token"
    (cron,) = [d for d in rendered("chameleon") if d["kind"] == "CronJob" and d["metadata"]["name"] == "finpulse-retrain"]
    env = {e["name"]: e for e in containers(cron)[0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == auth["mode"]
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": auth["secretName"], "key": "auth_token"}
    for c in containers(cluster):  # left to the operator: a second, different setting would win or clash
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & {e["name"] for e in c.get("env", [])}


def test_gcs_fault_tolerance_on_redis():
    docs = rendered("chameleon")
    by = index(docs)
    cluster, _ = ray()
    ft = cluster["spec"]["gcsFaultToleranceOptions"]
    host, port = ft["redisAddress"].split(":")
    assert int(port) in [p["port"] for p in by["Service"][host]["spec"]["ports"]]
    redis = by["StatefulSet"][host]
    assert by["Service"][host]["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert redis["spec"]["volumeClaimTemplates"] and "--appendonly yes" in " ".join(containers(redis)[0]["command"])
    (c,) = containers(redis)
    secret = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    assert {"name": secret["name"], "key": secret["key"]} == c["env"][0]["valueFrom"]["secretKeyRef"]
    assert '--requirepass "$REDIS_PASSWORD"' in c["command"][-1] and c["env"][0]["name"] == "REDIS_PASSWORD"
    for container in containers(cluster):  # KubeRay refuses RAY_REDIS_ADDRESS next to gcsFaultToleranceOptions
        assert "RAY_REDIS_ADDRESS" not in container_env(container, docs)


def test_gpu_group_selects_a100_nodes():
    cluster, jobs = ray()
    (gpu,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    pod = gpu["template"]["spec"]
    assert pod["nodeSelector"] == {"finpulse/gpu": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["image"].split(":")[0].endswith("-gpu")
    words = argv(jobs["finpulse-train-sentiment-gpu"])
    assert words[:2] == ["finpulse", "train-sentiment"] and "--use-gpu" in words
    assert float(words[words.index("--gpu-wait") + 1]) >= 300  # a GPU pod takes minutes to come up
    dev, _ = ray("dev")
    assert [g["maxReplicas"] for g in dev["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"] in ([], [0])


# --- sizing --------------------------------------------------------------------------------------

def option(words: list[str], name: str) -> float:
    """An option's value in the entrypoint, else the CLI's default for it."""
    if name in words:
        return float(words[words.index(name) + 1])
    (param,) = [p for p in click_command(command_words(words)).params if name in p.opts]
    return float(param.default)


def sweep(words: list[str]):
    """The sweep a `finpulse tune` entrypoint runs: its file from the image (/app is the repository root)
    with the entrypoint's --set overrides applied."""
    from finpulse.sweeps import load_spec

    space = words[words.index("--space") + 1]
    assert space.startswith("/app/"), space  # a file the image ships (cluster/Dockerfile copies finpulse/)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    return load_spec(ROOT / space.removeprefix("/app/"), sets)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sweep_rayjobs_put_trials_on_their_group(overlay):
    """The LSTM sweep's trials on the CPU group; the sentiment sweep's on the GPU group where there is one,
    each trial fitting one pod of its group."""
    cluster, jobs = ray(overlay)
    groups = capacity(cluster)
    lstm, sentiment = sweep(argv(jobs["finpulse-tune"])), sweep(argv(jobs["finpulse-tune-sentiment"]))
    assert lstm.model == "forecaster" and lstm.budget.gpus_per_trial == 0
    assert lstm.budget.cpus_per_trial <= groups["cpu"]["cpu"]
    assert sentiment.model == "sentiment"
    on = "gpu" if groups["gpu"]["pods"] else "cpu"
    assert bool(sentiment.budget.gpus_per_trial) == (on == "gpu"), overlay
    assert sentiment.budget.cpus_per_trial <= groups[on]["cpu"]
    assert '"sweeps/examples/*.yaml"' in (ROOT / "pyproject.toml").read_text()  # package data: installed too


def job_demand(words: list[str]) -> dict[str, float]:
    """Ray resources a job's tasks ask for beyond its driver: `gang` must be there at once, `full` is its
    concurrency; cpu counts the CPU group only (GPU workers' CPUs are on GPU pods)."""
    command = command_words(words) if words[0] == "finpulse" else ""
    if command == "train-forecaster":
        n = option(words, "--num-workers")
        return {"gang": n, "full": n, "gpu": 0}
    if command == "train-sentiment":
        n = option(words, "--num-workers")
        return {"gang": 0, "full": 0, "gpu": n} if "--use-gpu" in words else {"gang": n, "full": n, "gpu": 0}
    if command == "tune":
        budget = sweep(words).budget
        if budget.gpus_per_trial:  # trials on GPU pods: their CPUs are not the CPU group's
            return {"gang": 0, "full": 0, "gpu": budget.gpus_per_trial * budget.max_concurrent}
        return {"gang": budget.cpus_per_trial, "full": budget.cpus_per_trial * budget.max_concurrent, "gpu": 0}
    if command == "score":
        actors, gpus = option(words, "--num-actors"), option(words, "--gpus")
        cpus = 0 if gpus else actors * option(words, "--cpus-per-actor")
        return {"gang": cpus, "full": cpus, "gpu": actors * gpus}
    return {"gang": 0, "full": 0, "gpu": 0}


def capacity(cluster: dict) -> dict[str, dict[str, float]]:
    """Per worker group: pods at most, CPUs and GPUs per pod."""
    out = {}
    for g in cluster["spec"]["workerGroupSpecs"]:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        out[g["groupName"]] = {"pods": g["maxReplicas"], "min": g["minReplicas"], "cpu": float(limits["cpu"]),
                               "gpu": float(limits.get("nvidia.com/gpu", 0))}
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_rayjob_fits_its_overlay(overlay):
    """A job whose gang (Train workers, one trial, its actors) cannot fit would wait forever."""
    cluster, jobs = ray(overlay)
    groups = capacity(cluster)
    cpu = groups["cpu"]["pods"] * groups["cpu"]["cpu"]
    gpu = sum(g["pods"] * g["gpu"] for g in groups.values())
    for name, job in jobs.items():
        need = job_demand(argv(job))
        assert job["spec"]["entrypointNumCpus"] + need["gang"] <= cpu, name
        assert need["gpu"] <= gpu, f"{name} needs {need['gpu']} GPUs; {overlay} has {gpu}"


def test_chameleon_fits_serve_and_the_jobs_at_once():
    """cluster/README.md "Sizing": GPU pods for Serve's GPU replicas at their max plus every GPU job; CPU pods
    for every job's driver, Serve's CPU replicas at their min and the largest job's full concurrency."""
    cluster, jobs = ray()
    groups = capacity(cluster)
    deployments = ServeDeploySchema.model_validate(yaml.safe_load(PRODUCTION.read_text())).applications[0].deployments
    gpu_serve = [d for d in deployments if d.ray_actor_options.num_gpus]
    demands = [job_demand(argv(j)) for j in jobs.values()]
    gpu = groups["gpu"]
    serve_gpus_max = sum(d.autoscaling_config["max_replicas"] * d.ray_actor_options.num_gpus for d in gpu_serve)
    assert gpu["pods"] * gpu["gpu"] >= serve_gpus_max + sum(d["gpu"] for d in demands)
    assert gpu["min"] * gpu["gpu"] == sum(d.autoscaling_config["min_replicas"] * d.ray_actor_options.num_gpus
                                          for d in gpu_serve)  # the API's GPU replicas never wait for a pod
    for d in gpu_serve:  # a replica fits one GPU pod
        assert d.ray_actor_options.num_cpus <= gpu["cpu"] and d.ray_actor_options.num_gpus <= gpu["gpu"]
    serve_cpus_min = sum(d.autoscaling_config["min_replicas"] * d.ray_actor_options.num_cpus
                         for d in deployments if not d.ray_actor_options.num_gpus)
    drivers = sum(j["spec"]["entrypointNumCpus"] for j in jobs.values())
    largest = max(d["full"] for d in demands)
    assert groups["cpu"]["pods"] * groups["cpu"]["cpu"] >= drivers + serve_cpus_min + largest


# --- reachable, safely ---------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_only_the_api_over_tls(overlay):
    by = index(rendered(overlay))
    ingresses = list(by["Ingress"].values())
    assert len(ingresses) == 1
    spec = ingresses[0]["spec"]
    assert spec["ingressClassName"] == "traefik"
    backends = {(p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
                for r in spec["rules"] for p in r["http"]["paths"]}
    assert backends == {("finpulse-serve", 8000)}
    (tls,) = spec["tls"]
    assert tls["secretName"] == "finpulse-tls" and set(tls["hosts"]) == {r["host"] for r in spec["rules"]}  # pragma: allowlist secret
    for svc in by["Service"].values():  # dashboard, MLflow, MinIO consoles: ClusterIP only
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
    # the middlewares the router names exist (Traefik's <namespace>-<name>@kubernetescrd)
    named = ingresses[0]["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"].split(",")
    middlewares = by["Middleware"]
    assert {f"{m['metadata']['namespace']}-{n}@kubernetescrd" for n, m in middlewares.items()} == set(named)
    # Traefik admits no more than Serve's proxy queues at the Gateway: Serve never sheds what Traefik let in
    gateway = next(d for d in yaml.safe_load(PRODUCTION.read_text())["applications"][0]["deployments"]
                   if d["name"] == "Gateway")
    inflight = next(m["spec"]["inFlightReq"] for m in middlewares.values() if "inFlightReq" in m["spec"])
    assert 0 < inflight["amount"] <= gateway["max_queued_requests"]  # one proxy: finpulse-serve is the head's


# --- the image -----------------------------------------------------------------------------------

def ignored_by(path: str, pattern: str) -> bool:
    """A .dockerignore pattern covers the path or a folder above it (``**/x``: at any depth)."""
    parts = path.split("/")
    if pattern.startswith("**/"):
        return any(fnmatch(p, pattern[3:]) for p in parts)
    return any(fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def in_context(path: str, patterns: list[str]) -> bool:
    """Whether `docker build` sends ``path``: the last pattern that covers it wins (``!``: send)."""
    sent = True
    for pattern in patterns:
        if ignored_by(path, pattern.removeprefix("!").rstrip("/")):
            sent = pattern.startswith("!")
    return sent


def test_dockerignore_sends_only_what_the_image_copies():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    copied = [src for line in DOCKERFILE.splitlines() if line.startswith("COPY")
              for src in line.split()[1:-1] if not src.startswith("--")]
    assert {"finpulse", "serve_configs", "pyproject.toml"} <= set(copied)
    for src in copied:
        assert in_context(src, patterns) and in_context(f"{src}/x.py", patterns), src
    for kept_out in (".venv/bin/python", ".git/HEAD", ".finpulse/data/x.parquet", "tests/unit/test_x.py",
                     "benchmarks/results/x.json", "tf/terraform.tfvars", "finpulse/__pycache__/x.pyc"):
        assert not in_context(kept_out, patterns), kept_out
