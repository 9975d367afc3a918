"""checkov over tf/ (terraform) and the cluster manifests (kubernetes), offline, from checkov's own
virtual environment (.venv-checkov, made by `make test`: checkov pins a boto3 the project's pin
conflicts with). Any failed check fails; every skipped check carries its reason; a deliberately broken
copy of tf/ must fail, so a scan that reads nothing cannot pass."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.manifests import OVERLAYS, render_text

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# the skips and their reasons, beside this test (a YAML file in cluster/ would read as a manifest)
TF_CONFIG = ROOT / "tests" / "support" / "checkov" / "terraform.yaml"
CLUSTER_CONFIG = ROOT / "tests" / "support" / "checkov" / "kubernetes.yaml"
# no platform key or settings from the caller's environment: the scan is the same everywhere
OFFLINE = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "CKV_", "PRISMA_"))} | {"LOG_LEVEL": "ERROR"}
NO_REASON = {"", "No comment provided"}  # what checkov reports for an inline skip without a reason


def rendered_manifests(out_dir: Path) -> Path:
    """What the kubernetes scan reads: every overlay as `kubectl apply -k` would send it, one file each."""
    for overlay in OVERLAYS:
        (out_dir / f"{overlay}.yaml").write_text(render_text(overlay))
    return out_dir


def start_checkov(target: Path, config: Path, framework: str) -> subprocess.Popen:
    """One offline checkov run (no download, no API key), started: the scans run side by side."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make checkov` makes it (`make test` does too)"
    where = ["-f" if target.is_file() else "-d", str(target)]
    return subprocess.Popen([str(CHECKOV), *where, "--framework", framework, "--config-file", str(config),
                             "--skip-download", "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=OFFLINE)


def report_of(run: subprocess.Popen) -> dict:
    """The run's JSON report (exit 1 means failed checks, which the tests read from the report)."""
    out, err = run.communicate(timeout=300)
    assert run.returncode in (0, 1), err[-2000:]
    report = json.loads(out)
    return report if isinstance(report, dict) else {"results": {}, "summary": {}}


def broken_tf(tmp_path: Path) -> Path:
    """A copy of tf/ with SSH opened to the world: checkov must fail it."""
    broken = tmp_path / "tf"
    shutil.copytree(ROOT / "tf", broken)
    main = broken / "main.tf"
    text = main.read_text()
    assert "public_ports = { http = 80, https = 443 }" in text
    main.write_text(text.replace("public_ports = { http = 80, https = 443 }",
                                 "public_ports = { http = 80, https = 443, ssh = 22 }"))
    return broken


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    runs = {"terraform": start_checkov(ROOT / "tf", TF_CONFIG, "terraform"),
            "kubernetes": start_checkov(rendered_manifests(tmp_path_factory.mktemp("k8s")), CLUSTER_CONFIG,
                                        "kubernetes"),
            "broken": start_checkov(broken_tf(tmp_path_factory.mktemp("broken")), TF_CONFIG, "terraform")}
    return {name: report_of(run) for name, run in runs.items()}


def findings(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"].get("failed_checks", [])]


def unjustified_skips(report: dict, config: Path) -> list[str]:
    """Skips in the config file without a `# reason`, and inline skips without one."""
    bad = [line.strip() for line in config.read_text().splitlines()
           if re.match(r"\s*-\s*CKV", line) and not re.search(r"#\s*\S.{15,}", line)]
    for c in report["results"].get("skipped_checks", []):
        if c["check_result"].get("suppress_comment", "").strip() in NO_REASON:
            bad.append(f"{c['check_id']} {c['resource']} (inline skip, no reason)")
    return bad


def assert_clean(report: dict, config: Path) -> None:
    summary = report.get("summary", {})
    assert summary.get("resource_count", 0) > 0, f"checkov scanned nothing: {summary}"
    assert summary.get("parsing_errors", 0) == 0, report["results"].get("parsing_errors")
    found = findings(report)
    assert not found, f"{len(found)} checkov findings (fix them, or skip in the config with a reason):\n" + "\n".join(found)
    bad = unjustified_skips(report, config)
    assert not bad, f"skips without a reason: {bad}"


def test_checkov_terraform(reports):
    assert_clean(reports["terraform"], TF_CONFIG)


def test_checkov_kubernetes(reports):
    assert_clean(reports["kubernetes"], CLUSTER_CONFIG)


def test_checkov_catches_ssh_open_to_the_world(reports):
    assert any(f.startswith("CKV_OPENSTACK_2 ") for f in findings(reports["broken"]))


def test_skip_without_reason_is_refused(tmp_path):
    config = tmp_path / ".checkov.yaml"
    config.write_text("skip-check:\n  - CKV_K8S_15  # images are pinned to immutable version tags\n"
                      "  - CKV_K8S_43\n  - CKV_K8S_8  # n/a\n")
    inline = {"check_id": "CKV_OPENSTACK_2", "resource": "rule", "check_result": {"suppress_comment": "No comment provided"}}
    assert unjustified_skips({"results": {"skipped_checks": [inline]}}, config) == [
        "- CKV_K8S_43", "- CKV_K8S_8  # n/a", "CKV_OPENSTACK_2 rule (inline skip, no reason)"]
