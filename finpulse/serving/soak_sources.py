"""Where the soak reads its metrics: a Prometheus that scrapes Ray, or Ray's own metrics endpoints.

Both give the same thing, the current cumulative value of every series of the soak's metrics, and
the soak takes deltas between its start and each poll (``soak.window_stats``). With Prometheus the
values are as of its last scrape; scraping Ray directly (the embedded demo runs no Prometheus) reads
the very text Prometheus would, from every alive node's metrics export port.
"""

from __future__ import annotations

from typing import Any

import requests

from finpulse.serving.soak import SOAK_METRICS, MetricsSource


class PrometheusSource:
    """Instant PromQL queries of the soak's series on a Prometheus that scrapes the Ray cluster."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def query(self, promql: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body.get('error')}")
        return body["data"]["result"]

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        names = "|".join(SOAK_METRICS)
        out = []
        for row in self.query(f'{{__name__=~"{names}"}}'):
            labels = dict(row["metric"])
            out.append((labels.pop("__name__"), labels, float(row["value"][1])))
        return out


class RayMetricsSource:
    """Scrapes the Prometheus text of Ray's metrics export endpoints (``host:port`` each) directly."""

    def __init__(self, targets: list[str], timeout: float = 10.0):
        if not targets:
            raise ValueError("no Ray metrics endpoints to scrape")
        self.targets, self.timeout = list(targets), timeout

    @classmethod
    def from_cluster(cls) -> RayMetricsSource:
        """Every alive node's metrics export port, from the connected Ray cluster."""
        import ray

        return cls([f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}" for n in ray.nodes()
                    if n.get("Alive", n.get("alive")) and n.get("MetricsExportPort")])

    @classmethod
    def from_dashboard(cls, client: Any) -> RayMetricsSource:
        """The targets the Ray dashboard offers Prometheus (``/api/prometheus/sd``): no Ray connection
        needed, only the dashboard a ``canary.ServeConfigClient`` already talks to."""
        return cls([t for group in client.get_json("/api/prometheus/sd") for t in group.get("targets", [])])

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every endpoint's samples (labelled by endpoint); one that does not answer is skipped (the
        autoscaler's may be absent), but none answering is an error."""
        out, failures = [], []
        for target in self.targets:
            try:
                r = requests.get(f"http://{target}/metrics", timeout=self.timeout)
                r.raise_for_status()
            except requests.RequestException as exc:
                failures.append(f"{target}: {type(exc).__name__}")
                continue
            out += [(name, {**labels, "node": target}, value) for name, labels, value in parse_text(r.text)]
        if len(failures) == len(self.targets):
            raise RuntimeError(f"no Ray metrics endpoint answered: {', '.join(failures)}")
        return out


def parse_text(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The soak's samples in a Prometheus exposition text (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(SOAK_METRICS)
    lines = "\n".join(line for line in text.splitlines()
                      if line.startswith("#") or line.split("{", 1)[0].split(" ", 1)[0] in wanted)
    return [(s.name, dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(lines)
            for s in fam.samples if s.name in wanted]


def default_source(client: Any, settings: Any = None) -> MetricsSource:
    """Prometheus when ``settings.prometheus_url`` is set, else the Ray metrics endpoints that the
    dashboard behind ``client`` (a ``canary.ServeConfigClient``) lists."""
    from finpulse.config import get_settings

    s = settings or get_settings()
    if s.prometheus_url:
        return PrometheusSource(s.prometheus_url)
    return RayMetricsSource.from_dashboard(client)
