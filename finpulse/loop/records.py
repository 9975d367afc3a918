"""The files a retraining turn keeps: written atomically, so a crash leaves the old record or the new one,
never half of either. Pure file I/O, no MLflow (``finpulse.loop.steps`` adds the runs)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

TURN_FILE = "turn.json"
STEPS_DIR = "steps"
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


def turns_root(home: str | Path) -> Path:
    """Where a FinPulse home keeps its turns: ``<home>/pipeline/turns`` (pass ``get_settings().home``)."""
    return Path(home) / "pipeline" / "turns"


def step_key(name: str, inputs: dict[str, Any]) -> str:
    """A stable hash of a step's name and input versions: equal inputs, equal key, in any process.

    Inputs must be JSON (versions, ids, hashes): anything else has no stable text, so it is refused
    rather than hashed by ``repr`` (a memory address would make every rerun look new).
    """
    text = json.dumps({"step": name, "inputs": inputs}, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def new_turn_id() -> str:
    """Sortable by start time (UTC to the second), unique by a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, fsync it, then ``os.replace``: atomic on POSIX."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def step_path(folder: Path, name: str, key: str) -> Path:
    """One file per (step, key): changing a step's inputs and back finds the first record again."""
    return folder / STEPS_DIR / f"{name}.{key}.json"


def step_records(folder: Path) -> list[dict[str, Any]]:
    """Every step record of a turn, oldest first."""
    records = [read_json(p) for p in (folder / STEPS_DIR).glob("*.json")] if (folder / STEPS_DIR).is_dir() else []
    return sorted((r for r in records if r), key=lambda r: r["started_at"])


def list_turns(root: Path) -> list[dict[str, Any]]:
    """Every turn record under ``root``, newest first."""
    records = [read_json(p / TURN_FILE) for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted((r for r in records if r), key=lambda r: (r["started_at"], r["turn_id"]), reverse=True)
