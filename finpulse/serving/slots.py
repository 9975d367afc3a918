"""Model slots and the canary split between them.

A model has two slots, ``stable`` and ``canary``; :func:`pick_slot` sends a share of requests to the
canary (sticky per request key), and :class:`ModelSlot` holds what a slot serves, swapped in place.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finpulse.serving.errors import ModelNotReady

log = logging.getLogger(__name__)

STABLE, CANARY = "stable", "canary"


def key_fraction(key: str) -> float:
    """A stable position in [0, 1) for a request key: the same key always lands on the same side."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def pick_slot(canary_weight: float, key: str | None = None, rng: random.Random | None = None) -> str:
    """``canary`` for a share ``canary_weight`` of requests: sticky by key, random without one."""
    if canary_weight <= 0.0:
        return STABLE
    if canary_weight >= 1.0:
        return CANARY
    u = key_fraction(key) if key else (rng or random).random()
    return CANARY if u < canary_weight else STABLE



# ---- a model slot: load by spec, swap in place, report what it holds --------------------------------


def import_object(path: str) -> Callable[..., Any]:
    """``package.module:attr`` -> the object (loaders are configured by import path)."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"loader {path!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), attr)


@dataclass
class ModelSlot:
    """One loaded model, replaced atomically: a failed load keeps the previous model serving."""

    kind: str
    model: Any = None
    spec: str | None = None
    version: str | None = None
    loaded_at: float | None = None
    load_seconds: float | None = None
    error: str | None = None
    failed_spec: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def load(self, spec: str | None, loader: str, **kwargs: Any) -> bool:
        """Load ``spec`` unless it is already loaded; None empties the slot. True if the model changed."""
        with self._lock:
            if spec == self.spec and (self.model is not None or spec is None):
                return False
            if spec is None:
                self.model, self.spec, self.version, self.loaded_at, self.error = None, None, None, None, None
                self.failed_spec = None
                return True
            t0 = time.perf_counter()
            try:
                model = import_object(loader)(spec, **kwargs)
            except Exception as exc:
                self.error, self.failed_spec = f"{type(exc).__name__}: {exc}"[:500], spec
                log.warning("loading %s model %r failed: %s", self.kind, spec, self.error)
                return False
            self.model, self.spec, self.error, self.failed_spec = model, spec, None, None
            self.version = str(getattr(model, "version", None) or spec)
            self.loaded_at, self.load_seconds = time.time(), round(time.perf_counter() - t0, 3)
            return True

    def require(self) -> Any:
        model = self.model
        if model is None:
            why = f" ({self.error})" if self.error else (" (no model configured)" if self.spec is None else "")
            raise ModelNotReady(f"{self.kind} model not loaded{why}")
        return model

    def info(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "version": self.version, "ready": self.ready,
                "loaded_at": self.loaded_at, "load_seconds": self.load_seconds, "error": self.error,
                "failed_spec": self.failed_spec}
