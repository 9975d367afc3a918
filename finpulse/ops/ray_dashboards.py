"""Ray's own Grafana dashboards as files for Grafana's provisioning.

The Ray dashboard's Metrics tab embeds these dashboards by uid; Ray writes them only on the head node's
disk, which Grafana (another pod) cannot read. The Grafana pod's initContainer runs this module with the
FinPulse image, so the dashboards are those of the Ray the cluster runs, never a stale copy:
``python -m finpulse.ops.ray_dashboards /var/lib/grafana/dashboards/ray``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# the dashboards the Metrics tab shows for core, Serve, Data and Train (not the LLM ones)
DASHBOARDS = ("default", "serve", "serve_deployment", "data", "train")


def write_ray_dashboards(out: Path) -> dict[str, str]:
    """Write ``<name>_grafana_dashboard.json`` for each dashboard into ``out``; returns name -> uid."""
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    out.mkdir(parents=True, exist_ok=True)
    uids = {}
    for name in DASHBOARDS:
        content, uids[name] = getattr(factory, f"generate_{name}_grafana_dashboard")()
        (out / f"{name}_grafana_dashboard.json").write_text(content)
    return uids


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m finpulse.ops.ray_dashboards <folder>")
    for name, uid in write_ray_dashboards(Path(sys.argv[1])).items():
        print(f"{name}: {uid}")
