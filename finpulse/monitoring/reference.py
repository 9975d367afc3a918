"""What a model keeps to be compared against, and what a current window is built into.

A :class:`Snapshot` is built by ONE function (:func:`build_snapshot`) for both sides, so a model's
reference and the live window are summarised the same way and compare like for like. Each part is
optional: a forecaster's reference holds features and predictions, a sentiment model's the class
mix, a score sample and post embeddings (:meth:`Snapshot.merge` joins them for one report).

On disk (:func:`save` / :func:`load`) a snapshot is ``snapshot.json`` plus ``embeddings.npy``: no
pickle, so a reference logged to MLflow can be read back by any version of the code.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SNAPSHOT_FILE = "snapshot.json"
EMBEDDINGS_FILE = "embeddings.npy"
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_BINS = 10


@dataclass
class FeatureStats:
    """One feature: a seeded sample (<= sample_size), its quantiles and a histogram on quantile edges.

    ``n`` counts the finite values summarised (the histogram's total); the edges' inner cut points
    are the feature's own quantiles, so every bin holds about the same share of the reference.
    """

    n: int
    sample: np.ndarray
    quantiles: list[float]
    edges: list[float]
    counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sample": self.sample.tolist(), "quantiles": self.quantiles,
                "edges": [_num(e) for e in self.edges], "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureStats:
        return cls(int(d["n"]), np.asarray(d["sample"], dtype=np.float64), list(d["quantiles"]),
                   [float(e) for e in d["edges"]], [int(c) for c in d["counts"]])


@dataclass
class Snapshot:
    """Per-signal summaries of one data set; any part may be None (absent signal)."""

    features: dict[str, FeatureStats] | None = None
    class_counts: dict[str, int] | None = None
    scores: np.ndarray | None = None  # a sample of sentiment scores, in time order when the input was
    embeddings: np.ndarray | None = None  # float32 (n, d): the encoder's pooled output of sampled posts
    predictions: np.ndarray | None = None  # a sample of the model's predictions
    meta: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: Snapshot) -> Snapshot:
        """Parts of ``other`` fill the parts this one lacks (a forecaster's + a sentiment model's reference)."""
        take = {k: getattr(other, k) for k in ("features", "class_counts", "scores", "embeddings", "predictions")
                if getattr(self, k) is None}
        return replace(self, **take, meta={**other.meta, **self.meta})

    def to_dict(self) -> dict[str, Any]:
        return {"features": None if self.features is None else {k: v.to_dict() for k, v in self.features.items()},
                "class_counts": self.class_counts, "scores": _list(self.scores), "predictions": _list(self.predictions),
                "has_embeddings": self.embeddings is not None, "meta": self.meta}


def _list(a: np.ndarray | None) -> list[float] | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def _array(a: list[float] | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def _num(x: float) -> float | str:
    """JSON has no infinities: the outer histogram edges are written as strings."""
    return x if np.isfinite(x) else ("inf" if x > 0 else "-inf")


def _sample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``size`` values, drawn without replacement, kept in their original order."""
    if len(values) <= size:
        return values
    return values[np.sort(rng.choice(len(values), size, replace=False))]


def histogram_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[float]:
    """Quantile cut points (deduplicated, so discrete features get fewer bins) between -inf and +inf."""
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])) if len(values) else np.array([])
    return [-np.inf, *inner.tolist(), np.inf]


def bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts per bin ``(edges[i], edges[i+1]]``; the same rule for reference and current."""
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), values, side="left")
    return np.bincount(idx, minlength=len(edges) - 1)


def feature_stats(values: np.ndarray, *, sample_size: int, rng: np.random.Generator,
                  bins: int = DEFAULT_BINS) -> FeatureStats:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    edges = histogram_edges(v, bins)
    quants = np.quantile(v, QUANTILES).tolist() if len(v) else []
    return FeatureStats(len(v), _sample(v, sample_size, rng), quants, edges, bin_counts(v, edges).tolist())


def build_snapshot(features: pd.DataFrame | None, feature_columns: list[str] | None, scores: pd.DataFrame | None,
                   embeddings: np.ndarray | None, predictions: np.ndarray | None, *, sample_size: int = 2000,
                   seed: int = 0, meta: dict[str, Any] | None = None) -> Snapshot:
    """Summarise one data set. ``scores`` has columns ``label`` and ``score`` (rows in time order if the
    streaming detector is to read them); ``embeddings`` and ``predictions`` are subsampled to ``sample_size``."""
    rng = np.random.default_rng(seed)
    feats = None
    if features is not None and feature_columns:
        feats = {c: feature_stats(pd.to_numeric(features[c], errors="coerce").to_numpy(dtype=np.float64),
                                  sample_size=sample_size, rng=rng) for c in feature_columns if c in features}
    counts, score_sample = None, None
    if scores is not None:
        counts = {str(k): int(v) for k, v in scores["label"].astype(str).value_counts().sort_index().items()}
        s = pd.to_numeric(scores["score"], errors="coerce").to_numpy(dtype=np.float64)
        score_sample = _sample(s[np.isfinite(s)], sample_size, rng)
    emb = None
    if embeddings is not None and len(embeddings):
        e = np.asarray(embeddings, dtype=np.float32)
        emb = e[np.sort(rng.choice(len(e), sample_size, replace=False))] if len(e) > sample_size else e
    preds = None
    if predictions is not None:
        p = np.asarray(predictions, dtype=np.float64)
        preds = _sample(p[np.isfinite(p)], sample_size, rng)
    info = {"created_at": dt.datetime.now(dt.UTC).isoformat(), "sample_size": sample_size, "seed": seed,
            "n_scores": None if scores is None else len(scores), **(meta or {})}
    return Snapshot(feats, counts, score_sample, emb, preds, info)


def save(snapshot: Snapshot, folder: str | Path) -> Path:
    """Write ``snapshot.json`` (+ ``embeddings.npy`` when present) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SNAPSHOT_FILE).write_text(json.dumps(snapshot.to_dict(), default=str))
    if snapshot.embeddings is not None:
        np.save(folder / EMBEDDINGS_FILE, np.asarray(snapshot.embeddings, dtype=np.float32), allow_pickle=False)
    return folder


def load(folder: str | Path) -> Snapshot:
    folder = Path(folder)
    d = json.loads((folder / SNAPSHOT_FILE).read_text())
    emb_file = folder / EMBEDDINGS_FILE
    emb = np.load(emb_file, allow_pickle=False) if d.get("has_embeddings") and emb_file.exists() else None
    feats = None if d["features"] is None else {k: FeatureStats.from_dict(v) for k, v in d["features"].items()}
    return Snapshot(feats, d["class_counts"], _array(d["scores"]), emb, _array(d["predictions"]), d.get("meta", {}))
