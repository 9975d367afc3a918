"""The one checkpoint contract both trainers follow: tensors in a state-dict file, everything else in JSON.

A checkpoint folder holds ``state.pt`` (a dict of state dicts: model, optimizer, best weights...),
loaded with ``weights_only=True`` so restoring never runs pickled code, and ``meta.json`` (epoch,
history, early-stopping counters, resume points): readable by people and by tools without torch.
A trainer may add its own files next to them (the sentiment trainer keeps a Hugging Face folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def write(folder: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Save ``state`` (state dicts and tensors only) and ``meta`` (JSON-serialisable) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=float))
    return folder


def read_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / META_FILE).read_text())


def read(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, meta)`` from a folder :func:`write` made; tensors land on the CPU."""
    folder = Path(folder)
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True) \
        if (folder / STATE_FILE).is_file() else {}
    return state, read_meta(folder)
