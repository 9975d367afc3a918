"""Fuzz a running FinPulse API over HTTP from its own OpenAPI document with schemathesis (its CLI, the
way a user would run it), for the serve tests and `make bench-reliability`.

schemathesis' ``not_a_server_error`` check counts every 5xx, but a 503 is the API's promise under
overload or while a model (or the live feed's broker) is not there, so the verdict is read from the
HAR report instead: every request it sent, with its status. ``fuzz_5xx`` counts 5xx other than 503.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import requests


def _schemathesis() -> str:
    return str(Path(sys.executable).with_name("schemathesis"))


def fuzz(base: str, max_examples: int, report_dir: Path, api_key: str | None = None, seed: int = 1,
         timeout_s: float = 900) -> dict:
    """Every operation in ``{base}/openapi.json`` with up to ``max_examples`` generated cases per phase
    (valid and invalid inputs, other methods), then one GET /healthz: is the service still answering?"""
    report_dir.mkdir(parents=True, exist_ok=True)
    for old in report_dir.glob("har-*.json"):
        old.unlink()
    cmd = [_schemathesis(), "run", f"{base}/openapi.json", "--checks", "not_a_server_error", "-n", str(max_examples),
           "--seed", str(seed), "--request-timeout", "30", "--report", "har", "--report-dir", str(report_dir)]
    if api_key:
        cmd += ["-H", f"X-API-Key: {api_key}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=report_dir)
    (report_dir / "schemathesis.log").write_text((out.stdout + out.stderr).replace(api_key or "\0", "<api key>"))
    hars = sorted(report_dir.glob("har-*.json"))
    if not hars:
        raise RuntimeError(f"schemathesis wrote no report (exit {out.returncode}): {out.stdout[-800:]}{out.stderr[-800:]}")
    entries = json.loads(hars[-1].read_text())["log"]["entries"]
    hars[-1].unlink()  # tens of MB of generated bodies; the summary below is what is kept
    statuses = Counter(int(e["response"]["status"]) for e in entries)
    server_errors = [{"method": e["request"]["method"], "url": e["request"]["url"], "status": e["response"]["status"],
                      "body": e["response"].get("content", {}).get("text", "")[:300]}
                     for e in entries if e["response"]["status"] >= 500 and e["response"]["status"] != 503]
    after = requests.get(f"{base}/healthz", timeout=30).status_code
    summary = {"fuzz_cases": len(entries), "fuzz_5xx": len(server_errors), "fuzz_503": statuses.get(503, 0),
               "fuzz_statuses": dict(sorted(statuses.items())), "fuzz_healthz_after": after,
               "fuzz_server_errors": server_errors[:20]}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
