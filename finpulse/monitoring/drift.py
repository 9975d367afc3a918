"""Drift statistics between a reference :class:`Snapshot` and a current one (pure numpy/scipy).

Every test yields a p-value, and the report's alarm is Holm's step-down over ALL of them, so the
chance that a report raises its alarm when nothing changed stays at ``alpha`` however many features
are watched (Holm holds under any dependence between the tests: PSI and KS of one feature included).

- PSI per feature on the reference's quantile bins. With no drift, PSI ~ (1/n + 1/m) chi2(bins-1)
  (PSI is the symmetric KL divergence, whose second-order term is Pearson's statistic), so its
  p-value and the threshold ``chi2.ppf(1 - level, bins-1) * (1/n + 1/m)`` account for sample size,
  unlike the folklore 0.1/0.25 cut-offs that alarm on every small window.
- Two-sample KS per feature, on the score sample and on the prediction sample.
- Embeddings: MMD^2 (RBF kernel, median-heuristic bandwidth) with a permutation p-value.
- Class mix: chi-square on the 2 x classes contingency table.

``threshold`` of an entry is in the unit of its score, at the level Holm gives the entry's rank.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from finpulse.monitoring.reference import Snapshot, bin_counts

SIGNALS = ("features", "sentiment", "embeddings", "predictions")


class DriftConfig(BaseModel):
    """The knobs of a drift report; ``alpha`` is the report-level false-alarm rate."""

    alpha: float = Field(0.05, gt=0, lt=1)
    bins: int = Field(10, ge=2)
    permutations: int = Field(1000, ge=19)  # >= 1/(alpha/tests): MMD can alarm alone after Holm
    sample_size: int = Field(2000, ge=10)  # per-feature, score and prediction samples
    embedding_sample: int = Field(500, ge=10)  # posts embedded per side (the encoder is the cost)
    max_kernel_sample: int = Field(1000, ge=10)  # embeddings per side fed to the kernel matrix
    adwin_delta: float = Field(0.002, gt=0, lt=1)
    adwin_in_alarm: bool = False  # ADWIN watches change WITHIN the window; it reports, Holm decides
    seed: int = 0


@dataclass
class DriftEntry:
    signal: str
    feature: str
    test: str
    score: float
    p_value: float | None
    threshold: float | None = None
    alarm: bool = False
    n_reference: int = 0
    n_current: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriftReport:
    entries: list[DriftEntry]
    alarm: bool
    reasons: list[str]
    alpha: float
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"alarm": self.alarm, "reasons": self.reasons, "alpha": self.alpha, "created_at": self.created_at,
                "meta": self.meta, "entries": [asdict(e) for e in self.entries]}

    def entry(self, signal: str, feature: str, test: str) -> DriftEntry:
        return next(e for e in self.entries if (e.signal, e.feature, e.test) == (signal, feature, test))


# ---- single tests --------------------------------------------------------------------------------

def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = 0.5) -> float:
    """Population stability index; empty bins get ``eps`` counts (so ln never sees 0)."""
    p = (np.asarray(ref_counts, float) + eps) / (np.sum(ref_counts) + eps * len(ref_counts))
    q = (np.asarray(cur_counts, float) + eps) / (np.sum(cur_counts) + eps * len(cur_counts))
    return float(np.sum((q - p) * np.log(q / p)))


def psi_test(ref_counts: np.ndarray, edges: list[float], current: np.ndarray) -> DriftEntry:
    """PSI of ``current`` on the reference's bins; p-value from PSI / (1/n + 1/m) ~ chi2(bins-1)."""
    cur = bin_counts(current[np.isfinite(current)], edges)
    n, m, k = int(np.sum(ref_counts)), int(cur.sum()), len(ref_counts)
    if k < 2 or n == 0 or m == 0:
        return DriftEntry("", "", "psi", 0.0, 1.0, None, n_reference=n, n_current=m)
    value = psi(np.asarray(ref_counts), cur)
    scale = 1.0 / n + 1.0 / m
    return DriftEntry("", "", "psi", value, float(stats.chi2.sf(value / scale, k - 1)), n_reference=n, n_current=m,
                      detail={"bins": k, "scale": scale, "current_counts": cur.tolist()})


def ks_test(reference: np.ndarray, current: np.ndarray) -> DriftEntry:
    a, b = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(a) == 0 or len(b) == 0:
        return DriftEntry("", "", "ks", 0.0, 1.0, None, n_reference=len(a), n_current=len(b))
    with warnings.catch_warnings():  # ties (counts, flags): scipy falls back to the asymptotic p-value and says so
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ks_2samp(a, b)
    return DriftEntry("", "", "ks", float(res.statistic), float(res.pvalue), n_reference=len(a), n_current=len(b))


def chi2_class_mix(reference: dict[str, int], current: dict[str, int]) -> DriftEntry:
    labels = sorted(set(reference) | set(current))
    table = np.array([[reference.get(c, 0) for c in labels], [current.get(c, 0) for c in labels]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    n, m = int(table[0].sum()), int(table[1].sum())
    if table.shape[1] < 2 or n == 0 or m == 0:
        return DriftEntry("", "class_mix", "chi2", 0.0, 1.0, None, n_reference=n, n_current=m)
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    share = {c: [reference.get(c, 0) / max(n, 1), current.get(c, 0) / max(m, 1)] for c in labels}
    return DriftEntry("", "class_mix", "chi2", float(chi2), float(p), n_reference=n, n_current=m,
                      detail={"dof": int(dof), "share_reference_current": share})


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", z, z)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)


def mmd_test(reference: np.ndarray, current: np.ndarray, *, permutations: int, seed: int) -> DriftEntry:
    """Biased MMD^2 with an RBF kernel (bandwidth: median pairwise distance of the pooled sample) and a
    permutation p-value ``(1 + #{null >= observed}) / (1 + permutations)``; the null is kept for the plot."""
    x, y = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return DriftEntry("", "", "mmd", 0.0, 1.0, None, n_reference=n, n_current=m)
    d2 = _sq_dists(np.vstack([x, y]))
    med = float(np.median(d2[np.triu_indices(n + m, 1)]))
    kernel = np.exp(-d2 / max(med, 1e-12))
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(base @ kernel @ base)
    null = np.empty(permutations)
    for start in range(0, permutations, 200):  # (P, N) weight rows: one matrix product per chunk
        w = np.stack([rng.permutation(base) for _ in range(min(200, permutations - start))])
        null[start:start + len(w)] = np.einsum("ij,ij->i", w @ kernel, w)
    p = (1.0 + np.sum(null >= observed)) / (1.0 + permutations)
    return DriftEntry("", "", "mmd", observed, float(p), n_reference=n, n_current=m,
                      detail={"bandwidth_sq": med, "null": np.round(null, 8).tolist()})


# ---- the report ----------------------------------------------------------------------------------

def holm(p_values: list[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down: (reject flags, per-test levels alpha / (M - rank))."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    levels = np.empty(len(p))
    levels[order] = alpha / (len(p) - np.arange(len(p)))
    reject = np.zeros(len(p), dtype=bool)
    for i in order:
        if p[i] > levels[i]:
            break
        reject[i] = True
    return reject, levels


def _threshold(e: DriftEntry, level: float) -> float | None:
    """The score at which this entry's test alone would reject at ``level`` (its Holm level)."""
    if e.test == "psi" and "bins" in e.detail:
        return float(stats.chi2.ppf(1 - level, e.detail["bins"] - 1) * e.detail["scale"])
    if e.test == "ks" and e.n_reference and e.n_current:
        n, m = e.n_reference, e.n_current
        return float(np.sqrt(-np.log(level / 2) / 2) * np.sqrt((n + m) / (n * m)))
    if e.test == "chi2" and "dof" in e.detail:
        return float(stats.chi2.ppf(1 - level, e.detail["dof"]))
    if e.test == "mmd" and e.detail.get("null"):
        return float(np.quantile(e.detail["null"], 1 - level))
    return None


def _tagged(entry: DriftEntry, signal: str, feature: str) -> DriftEntry:
    entry.signal, entry.feature = signal, feature or entry.feature
    return entry


def collect_tests(reference: Snapshot, current: Snapshot, config: DriftConfig) -> list[DriftEntry]:
    """Every two-sample test both snapshots have the data for."""
    out: list[DriftEntry] = []
    for name, ref in (reference.features or {}).items():
        cur = (current.features or {}).get(name)
        if cur is None:
            continue
        out.append(_tagged(psi_test(np.asarray(ref.counts), ref.edges, cur.sample), "features", name))
        out.append(_tagged(ks_test(ref.sample, cur.sample), "features", name))
    if reference.class_counts and current.class_counts:
        out.append(_tagged(chi2_class_mix(reference.class_counts, current.class_counts), "sentiment", "class_mix"))
    if reference.scores is not None and current.scores is not None:
        out.append(_tagged(ks_test(reference.scores, current.scores), "sentiment", "score"))
    if reference.embeddings is not None and current.embeddings is not None:
        k = config.max_kernel_sample
        out.append(_tagged(mmd_test(reference.embeddings[:k], current.embeddings[:k],
                                    permutations=config.permutations, seed=config.seed), "embeddings", "pooled"))
    if reference.predictions is not None and current.predictions is not None:
        ref_pred = reference.predictions
        edges = _pred_edges(ref_pred, config.bins)
        out.append(_tagged(psi_test(bin_counts(ref_pred, edges), edges, current.predictions), "predictions", "pred"))
        out.append(_tagged(ks_test(ref_pred, current.predictions), "predictions", "pred"))
    return out


def _pred_edges(values: np.ndarray, bins: int) -> list[float]:
    from finpulse.monitoring.reference import histogram_edges

    return histogram_edges(values[np.isfinite(values)], bins)


def decide(entries: list[DriftEntry], config: DriftConfig, extra: list[DriftEntry] | None = None) -> DriftReport:
    """Holm over the entries' p-values; ``extra`` (the streaming detector's) joins the alarm only when
    ``config.adwin_in_alarm``."""
    reject, levels = holm([e.p_value if e.p_value is not None else 1.0 for e in entries], config.alpha)
    reasons = []
    for e, r, lvl in zip(entries, reject, levels, strict=True):
        e.alarm, e.threshold = bool(r), _threshold(e, float(lvl))
        e.detail["holm_level"] = float(lvl)
        if r:
            reasons.append(f"{e.signal}/{e.feature}: {e.test}={e.score:.4g} (p={e.p_value:.2g} <= {lvl:.2g})")
    for e in extra or []:
        if e.alarm:
            reasons.append(f"{e.signal}/{e.feature}: {e.test} detected {e.detail.get('detections')} change(s)"
                           + ("" if config.adwin_in_alarm else " (advisory)"))
    alarm = any(reject) or (config.adwin_in_alarm and any(e.alarm for e in extra or []))
    return DriftReport([*entries, *(extra or [])], bool(alarm), reasons, config.alpha,
                       meta={"tests": len(entries), "config": config.model_dump()})


def detect(reference: Snapshot, current: Snapshot, config: DriftConfig | None = None,
           extra: list[DriftEntry] | None = None) -> DriftReport:
    """All tests between two snapshots, Holm-corrected into one report-level alarm."""
    config = config or DriftConfig()
    report = decide(collect_tests(reference, current, config), config, extra)
    report.meta.update({"reference": reference.meta, "current": current.meta})
    return report
