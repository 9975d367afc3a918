"""What an ETL version id is made of: input contents, curation code, libraries and configuration.

The id names the output, so two runs share an id only when they would write the same bytes. It is the
first 12 hex digits of a SHA-256 over:

- every input file's URI and the SHA-256 of its bytes (streamed once through :mod:`finpulse.storage`,
  local or ``s3://``; the URI is in because it lands in the output's ``source`` column);
- the SHA-256 of the source of every module that decides the output (:data:`CODE_MODULES`, checked
  by a test to cover everything the ETL imports from FinPulse), and the FinPulse package version;
- the versions of the libraries whose behaviour is in the output (VADER's lexicon ships with its
  package; pandas/pyarrow/numpy parse, compute and write Parquet);
- the ETL configuration.

The manifest records all of it under ``identity`` with the time hashing took.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from finpulse import storage

# The FinPulse modules whose source decides what the ETL writes. `config` is left out on purpose: it
# holds locations and credentials, never a transformation; so is `outages` (how a dead server is reported).
CODE_MODULES: tuple[str, ...] = (
    "finpulse.data.calendar",
    "finpulse.data.catalog",
    "finpulse.data.curate",
    "finpulse.data.etl",
    "finpulse.data.features",
    "finpulse.data.lineage",
    "finpulse.data.rawfile",
    "finpulse.data.schemas",
    "finpulse.data.sources",
    "finpulse.data.vader",
    "finpulse.data.validate",
    "finpulse.storage",
)
NOT_OUTPUT_CODE: frozenset[str] = frozenset({"finpulse.config", "finpulse.outages"})
LIBRARIES: tuple[str, ...] = ("numpy", "pandas", "pyarrow", "vaderSentiment")
HASH_THREADS = 4  # hashlib and pyarrow reads release the GIL; threads also hide S3 latency


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # running from a working dir without an install (ray job submit)
        return "unknown"


def package_version() -> str:
    return f"finpulse-{_dist_version('finpulse')}"


def module_source(name: str) -> bytes:
    """The bytes of a module's source file, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or spec.loader is None:
        raise ModuleNotFoundError(f"cannot locate the source of {name}")
    return spec.loader.get_data(spec.origin)  # type: ignore[attr-defined]


def code_identity(modules: tuple[str, ...] | None = None) -> dict[str, Any]:
    """SHA-256 of each output-deciding module's source, the package version and library versions."""
    names = CODE_MODULES if modules is None else modules
    return {
        "package": package_version(),
        "modules": {m: hashlib.sha256(module_source(m)).hexdigest() for m in sorted(names)},
        "libraries": {lib: _dist_version(lib) for lib in LIBRARIES},
    }


def _file_entry(uri: str) -> dict[str, Any]:
    digest, size = storage.file_sha256(uri)
    return {"uri": uri, "size": size, "sha256": digest}


def input_identity(files: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """``{role: [uri, ...]}`` -> ``{role: [{uri, size, sha256}, ...]}``; every file read once."""
    flat = [u for uris in files.values() for u in uris]
    with ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, len(flat)))) as pool:
        entries = dict(zip(flat, pool.map(_file_entry, flat), strict=True))
    return {role: [entries[u] for u in uris] for role, uris in files.items()}


def version_identity(files: dict[str, list[str]], config: dict[str, Any]) -> dict[str, Any]:
    """Everything the version id is made of, and the id (``hash``) itself."""
    t0 = time.perf_counter()
    inputs = input_identity(files)
    identity: dict[str, Any] = {"inputs": inputs, "code": code_identity(), "config": config}
    identity["hash"] = version_id(identity)
    identity["seconds"] = round(time.perf_counter() - t0, 3)
    identity["bytes_hashed"] = sum(e["size"] for entries in inputs.values() for e in entries)
    return identity


def version_id(identity: dict[str, Any]) -> str:
    """12 hex digits over inputs (URI and content hash), code, libraries and configuration."""
    payload = {
        "inputs": {role: [[e["uri"], e["sha256"]] for e in entries] for role, entries in identity["inputs"].items()},
        "code": identity["code"],
        "config": identity["config"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]
