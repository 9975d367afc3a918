"""Re-create the vendored KubeRay schemas from the upstream CRD files, or check them against it.

    python tests/support/kuberay-crds/extract.py [UPSTREAM_DIR] [--check]

UPSTREAM_DIR holds ray-project/kuberay v1.7.0's ray-operator/config/crd/bases/ray.io_*.yaml (default:
../shared/kuberay-crds beside the checkout). Each output file is that CRD's
``spec.versions[name=v1].schema.openAPIV3Schema``, unchanged, written as JSON (one-space indent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# upstream file -> its sha256 at v1.7.0 (commit 59d663aeec13760646da3db9c1cf8cfe883e30b7)
UPSTREAM = {
    "ray.io_rayclusters.yaml": "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1",  # pragma: allowlist secret - sha256 pin, not a secret
    "ray.io_rayjobs.yaml": "01a5cf3b17c1769fda44af7e82debcd98722f0c27b9ab84d084681c6649121f5",  # pragma: allowlist secret - sha256 pin, not a secret
    "ray.io_rayservices.yaml": "0a8fc325e6e22b9231c1f282b309555e2ecf94227ca20a03df3d1d9a403907ab",  # pragma: allowlist secret - sha256 pin, not a secret
}


def vendored_name(upstream: str) -> str:
    return upstream.replace(".yaml", ".v1.schema.json")


def extract(path: Path) -> str:
    """The v1 openAPIV3Schema of one upstream CRD file, as the vendored file's text."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != UPSTREAM[path.name]:
        raise SystemExit(f"{path}: not the v1.7.0 file (sha256 differs)")
    crd = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader (C when built)
    v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return json.dumps(v1["schema"]["openAPIV3Schema"], indent=1) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("upstream", nargs="?", default=str(HERE.parents[3] / "shared" / "kuberay-crds"))
    ap.add_argument("--check", action="store_true", help="compare with the vendored files, write nothing")
    args = ap.parse_args()
    differ = []
    for name in UPSTREAM:
        text = extract(Path(args.upstream) / name)
        target = HERE / vendored_name(name)
        if args.check:
            if not target.is_file() or target.read_text() != text:
                differ.append(target.name)
        else:
            target.write_text(text)
    for name in differ:
        print(f"{name}: differs from upstream", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
