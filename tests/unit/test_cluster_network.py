"""cluster/base/network: a default deny, and every in-cluster address a pod is configured to reach (env, envFrom,
command, args, mounted ConfigMaps, Prometheus's pod discovery, the RayCluster's Redis, RayJob submitters, the Ingress)
is admitted by a NetworkPolicy selecting the target pods, by the API's NetworkPolicy semantics; no cluster needed."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.support.kube import container_env, containers, index
from tests.support.manifests import OVERLAYS, rendered

NS = "finpulse"
ADDRESS = re.compile(r"(?<![\w.-])([a-z][a-z0-9-]*):(\d{2,5})\b")  # host:port, not the tail of a.b:port
# Pods of other namespaces that reach in: k3s's Ingress controller and the KubeRay operator (job status).
def outside(ns: str, app: str) -> dict:
    return {"name": f"{ns}/{app}", "ns": ns, "labels": {"app.kubernetes.io/name": app}, "ports": {}, "spec": None}


TRAEFIK, OPERATOR = outside("kube-system", "traefik"), outside("kuberay", "kuberay-operator")


def pod(name: str, labels: dict, spec: dict) -> dict:
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    return {"name": name, "ns": NS, "labels": labels, "ports": ports, "spec": spec}


def pods_of(docs: list[dict]) -> list[dict]:
    """Every pod the overlay makes, with the labels it will carry (KubeRay's own on Ray pods)."""
    found = []
    for d in docs:
        kind, name, spec = d["kind"], d["metadata"]["name"], d.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
            template = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
            found.append(pod(f"{kind}/{name}", template.get("metadata", {}).get("labels", {}), template["spec"]))
        elif kind == "RayCluster":
            groups = [("head", "headgroup", spec["headGroupSpec"])]
            groups += [("worker", g["groupName"], g) for g in spec["workerGroupSpecs"]]
            for node_type, group, g in groups:
                labels = {**g["template"].get("metadata", {}).get("labels", {}), "ray.io/cluster": name,
                          "ray.io/node-type": node_type, "ray.io/group": group}
                found.append(pod(f"{kind}/{name} {group}", labels, g["template"]["spec"]))
        elif kind == "RayJob":
            template = spec["submitterPodTemplate"]
            found.append(pod(f"{kind}/{name} submitter", template.get("metadata", {}).get("labels", {}),
                             template["spec"]))
    return found


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": has and value in e.get("values", []), "NotIn": not has or value not in e.get("values", []),
              "Exists": has, "DoesNotExist": not has}[e["operator"]]
        if not ok:
            return False
    return True


def service_targets(service: dict, port: int, pods: list[dict]) -> list[tuple[dict, int]]:
    """(pod, container port) pairs a connection to service:port lands on."""
    (sp,) = [p for p in service["spec"]["ports"] if p["port"] == port] or [None]
    assert sp, f"Service {service['metadata']['name']} has no port {port}"
    selected = [p for p in pods if p["ns"] == NS and selects({"matchLabels": service["spec"]["selector"]}, p["labels"])]
    target = sp.get("targetPort", port)
    return [(p, p["ports"][target] if isinstance(target, str) else target) for p in selected]


def mounted_config_maps(spec: dict, config_maps: dict) -> list[dict]:
    sources = [v for v in spec.get("volumes", [])] + [s for v in spec.get("volumes", []) for s in v.get("projected", {}).get("sources", [])]
    return [config_maps[s["configMap"]["name"]] for s in sources if "configMap" in s]


def discovered(prometheus_yml: str, pods: list[dict]) -> list[tuple[dict, int, str]]:
    """The pod targets of prometheus.yml's kubernetes_sd jobs: keep rules on pod labels and container port
    names, and a port rewritten by an __address__ replacement."""
    out = []
    for job in (yaml.safe_load(prometheus_yml) or {}).get("scrape_configs", []):
        if not job.get("kubernetes_sd_configs"):
            continue
        for p in pods:
            labels = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in p["labels"].items()}
            ports, keep = dict(p["ports"]), True
            for r in job.get("relabel_configs", []):
                source = (r.get("source_labels") or [""])[0]
                if r.get("action") == "keep" and source.startswith("__meta_kubernetes_pod_label_"):
                    keep &= re.fullmatch(r["regex"], labels.get(source.removeprefix("__meta_kubernetes_pod_label_"), "")) is not None
                elif r.get("action") == "keep" and source == "__meta_kubernetes_pod_container_port_name":
                    ports = {n: v for n, v in ports.items() if re.fullmatch(r["regex"], n)}
                elif r.get("target_label") == "__address__":
                    ports = {n: int(r["replacement"].rsplit(":", 1)[1]) for n in ports}
            out += [(p, port, f"prometheus.yml job {job['job_name']}") for port in ports.values() if keep]
    return out


def configured_paths(docs: list[dict]) -> list[tuple[dict, dict, int, str]]:
    """(source pod, target pod, port, why) for every in-cluster connection the manifests configure."""
    by = index(docs)
    services, config_maps = by.get("Service", {}), by.get("ConfigMap", {})
    pods = pods_of(docs)
    paths = []

    def to_service(src: dict, host: str, port: int, why: str) -> None:
        targets = service_targets(services[host], port, pods)
        assert targets, f"Service {host} selects no pod ({why})"
        paths.extend((src, dst, p, why) for dst, p in targets if dst is not src)  # not a pod's own name

    for src in pods:
        texts = []
        for c in containers(src["spec"]):
            env = container_env(c, docs)
            texts += [(f"{c['name']} env {k}", e["value"]) for k, e in env.items() if "value" in e]
            texts += [(f"{c['name']} command", " ".join(c.get("command", []) + c.get("args", [])))]
            if "PGHOST" in env and "PGPORT" in env:  # libpq's pair
                texts.append((f"{c['name']} PGHOST", f"{env['PGHOST']['value']}:{env['PGPORT']['value']}"))
        for cm in mounted_config_maps(src["spec"], config_maps):
            for key, text in cm.get("data", {}).items():
                texts.append((f"ConfigMap {cm['metadata']['name']}/{key}", text))
                if key.startswith("prometheus"):
                    paths += [(src, dst, port, why) for dst, port, why in discovered(text, pods)]
        for why, text in texts:
            for host, port in ADDRESS.findall(text):
                if host in services:
                    to_service(src, host, int(port), f"{src['name']}: {why}")
    for cluster in by.get("RayCluster", {}).values():
        ray = [p for p in pods if p["labels"].get("ray.io/cluster") == cluster["metadata"]["name"]]
        head = [p for p in ray if p["labels"]["ray.io/node-type"] == "head"]
        host, port = cluster["spec"]["gcsFaultToleranceOptions"]["redisAddress"].split(":")
        for h in head:
            to_service(h, host, int(port), "RayCluster gcsFaultToleranceOptions.redisAddress")
        paths += [(a, b, port, "Ray pods reach each other") for a in ray for b in ray if a is not b
                  for port in b["ports"].values()]
        paths += [(OPERATOR, h, h["ports"]["dashboard"], "KubeRay polls the job API") for h in head]
    for job in by.get("RayJob", {}).values():
        (sub,) = [p for p in pods if p["name"] == f"RayJob/{job['metadata']['name']} submitter"]
        heads = [p for p in pods if selects({"matchLabels": job["spec"]["clusterSelector"]}, p["labels"])
                 and p["labels"].get("ray.io/node-type") == "head"]
        paths += [(sub, h, h["ports"]["dashboard"], "KubeRay's submitter: ray job submit") for h in heads]
    for ingress in by.get("Ingress", {}).values():
        for rule in ingress["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                to_service(TRAEFIK, backend["name"], backend["port"]["number"], f"Ingress {ingress['metadata']['name']}")
    return paths


def peer_admits(peer: dict, src: dict) -> bool:
    if "ipBlock" in peer:  # none here: pod IPs change
        return False
    ns_ok = (src["ns"] == NS if "namespaceSelector" not in peer
             else selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": src["ns"]}))
    return ns_ok and selects(peer.get("podSelector", {}), src["labels"])


def port_admits(ports: list[dict] | None, port: int, dst: dict) -> bool:
    if not ports:
        return True
    for p in ports:
        want = p.get("port")
        want = dst["ports"].get(want) if isinstance(want, str) else want
        if p.get("protocol", "TCP") == "TCP" and (want is None or want <= port <= p.get("endPort", want)):
            return True
    return False


def admitted(policies: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Some ingress NetworkPolicy selecting dst admits src on port (with a default deny in place, no
    policy means no traffic)."""
    for pol in policies:
        spec = pol["spec"]
        if pol["metadata"].get("namespace") != dst["ns"] or "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            continue
        if selects(spec["podSelector"], dst["labels"]) and any(
                (not rule.get("from") or any(peer_admits(peer, src) for peer in rule["from"]))
                and port_admits(rule.get("ports"), port, dst) for rule in spec.get("ingress", [])):
            return True
    return False


def broken_paths(docs: list[dict]) -> list[str]:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    return sorted({f"{src['name']} -> {dst['name']}:{port} ({why})" for src, dst, port, why in configured_paths(docs)
                   if not admitted(policies, src, dst, port)})


def test_default_deny_ingress_covers_every_pod():
    docs = rendered("chameleon")
    (deny,) = [d for d in docs if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"] == {}
               and "Ingress" in d["spec"]["policyTypes"] and not d["spec"].get("ingress")]
    assert deny["metadata"]["namespace"] == NS == {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}.pop()


def test_paths_are_found():
    """The path finder itself: the connections this deployment depends on are among those it reads."""
    found = {(s["name"], d["name"], port) for s, d, port, _ in configured_paths(rendered("chameleon"))}
    for path in [("Deployment/mlflow", "StatefulSet/postgres", 5432), ("Deployment/mlflow", "StatefulSet/minio", 9000),
                 ("CronJob/finpulse-backup-postgres", "StatefulSet/postgres", 5432),
                 ("RayCluster/finpulse cpu", "StatefulSet/minio", 9000), ("RayCluster/finpulse cpu", "Deployment/mlflow", 5000),
                 ("CronJob/finpulse-backup-objects", "StatefulSet/minio", 9000), ("Job/minio-buckets", "StatefulSet/minio", 9000),
                 ("StatefulSet/prometheus", "StatefulSet/minio", 9000), ("StatefulSet/prometheus", "Deployment/alertmanager", 9093),
                 ("StatefulSet/prometheus", "RayCluster/finpulse gpu", 8080),
                 ("StatefulSet/prometheus", "RayCluster/finpulse headgroup", 44217),
                 ("Deployment/grafana", "StatefulSet/prometheus", 9090),
                 ("RayCluster/finpulse headgroup", "StatefulSet/prometheus", 9090),
                 ("RayCluster/finpulse headgroup", "Deployment/grafana", 3000),
                 ("RayCluster/finpulse headgroup", "StatefulSet/redis", 6379),
                 ("RayCluster/finpulse cpu", "RayCluster/finpulse headgroup", 6379),
                 ("CronJob/finpulse-retrain", "RayCluster/finpulse headgroup", 8265),
                 ("RayJob/finpulse-etl submitter", "RayCluster/finpulse headgroup", 8265),
                 ("kube-system/traefik", "RayCluster/finpulse headgroup", 8000)]:
        assert path in found, path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configured_path_is_allowed(overlay):
    assert broken_paths(rendered(overlay)) == []


def drop_peer(policy: str, label: tuple[str, str]):
    """A mutation: remove from `policy` every peer whose podSelector names `label`, and a rule left with
    no peer (an empty `from` would admit everyone)."""
    def mutate(docs: list[dict]) -> None:
        (pol,) = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == policy]
        for rule in pol["spec"]["ingress"]:
            rule["from"] = [p for p in rule["from"] if p.get("podSelector", {}).get("matchLabels", {}).get(label[0]) != label[1]]
        pol["spec"]["ingress"] = [r for r in pol["spec"]["ingress"] if r["from"]]
    return mutate


@pytest.mark.parametrize("mutate, expected", [
    (drop_peer("postgres", ("app", "mlflow")), "Deployment/mlflow -> StatefulSet/postgres:5432"),
    (drop_peer("minio", ("app", "prometheus")), "StatefulSet/prometheus -> StatefulSet/minio:9000"),
    (drop_peer("ray-head", ("app.kubernetes.io/name", "traefik")),
     "kube-system/traefik -> RayCluster/finpulse headgroup:8000"),
    (drop_peer("ray-head", ("finpulse/ray-client", "true")), "CronJob/finpulse-retrain -> RayCluster/finpulse headgroup:8265"),
    (lambda docs: docs.remove(next(d for d in docs if d["metadata"]["name"] == "redis" and d["kind"] == "NetworkPolicy")),
     "RayCluster/finpulse headgroup -> StatefulSet/redis:6379"),
])
def test_a_dropped_allow_is_a_broken_path(mutate, expected):
    docs = copy.deepcopy(rendered("chameleon"))
    mutate(docs)
    broken = broken_paths(docs)
    assert any(b.startswith(expected + " ") for b in broken), broken
