"""Alerting runs end to end with the shipped configuration: a real Prometheus (prometheus.yml's `alerting:`
block) sends a firing `severity: page` alert to a real Alertmanager running cluster/base/monitoring/
alertmanager.yml with the manifest's arguments, which delivers it to the webhook receiver. Only the
addresses (Kubernetes Service names) and the webhook URL (a Secret on the cluster) are local here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.support.manifests import rendered
from tests.support.servers import free_port, wait_http

MONITORING = Path(__file__).resolve().parents[2] / "cluster" / "base" / "monitoring"


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint recording every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def start(argv: list[str], log: Path, ready: str) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_http(ready, timeout=60, proc=proc)
    return proc


def alertmanager_args() -> list[str]:
    """The Deployment's arguments, minus the paths this test replaces."""
    dep = next(d for d in rendered("chameleon") if d["kind"] == "Deployment" and d["metadata"]["name"] == "alertmanager")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return [a for a in c["args"] if not a.startswith(("--config.file=", "--storage.path="))]


def test_a_firing_page_alert_reaches_the_webhook(tmp_path, webhook):
    url, received = webhook
    binary, prometheus = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"), shutil.which("prometheus")
    assert binary and prometheus, "Debian packages prometheus-alertmanager and prometheus (.ci/run installs them)"
    am_cfg = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    (hook,) = am_cfg["receivers"][0]["webhook_configs"]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    if re.search(r"version 0\.(1\d|2[0-5])\.", version):  # Debian's 0.25 predates url_file (the image has it)
        hook["url"] = url
        del hook["url_file"]
    else:
        (tmp_path / "webhook-url").write_text(url)
        hook["url_file"] = str(tmp_path / "webhook-url")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg))
    am_port = free_port()
    am = start([binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
                *alertmanager_args(), f"--web.listen-address=127.0.0.1:{am_port}"], tmp_path / "am.log",
               f"http://127.0.0.1:{am_port}/-/ready")

    prom_cfg = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (am_target,) = prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    prom_cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom_cfg["scrape_configs"] = []  # nothing to scrape: the rule below fires by itself
    prom_cfg["rule_files"] = ["always.yml"]
    (tmp_path / "always.yml").write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": [
        {"alert": "FinPulseTestPage", "expr": "vector(1)", "labels": {"severity": "page"}}]}]}))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
    prom_port = free_port()
    prom = start([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}",
                  "--rules.alert.resend-delay=1s"],  # the first send may precede Alertmanager's discovery
                 tmp_path / "prom.log",
                 f"http://127.0.0.1:{prom_port}/-/ready")
    try:
        deadline = time.time() + 30
        while not received and time.time() < deadline:
            time.sleep(0.2)
        assert received, (tmp_path / "am.log").read_text()[-2000:]
        body = received[0]
        assert body["receiver"] == "finpulse-webhook" and body["status"] == "firing"
        assert [a["labels"]["alertname"] for a in body["alerts"]] == ["FinPulseTestPage"]
        assert body["alerts"][0]["labels"]["severity"] == "page"
        assert am_target == "alertmanager:9093"  # what the cluster resolves (the Service; other tests check it)
    finally:
        for proc in (prom, am):
            proc.terminate()
            proc.wait(timeout=30)
