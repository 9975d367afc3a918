"""Calibration experiments for the drift report: false-alarm rate over same-distribution seeds and power
on planted shifts. The unit tests and ``benchmarks/drift.py`` run these same functions.

Features: 10 correlated columns (Gaussian copula, correlation 0.5) with the marginals daily features
have (normal, heavy-tailed, skewed, bounded, a count, a 0/1 flag), so ties, tails and dependence are
all exercised; a planted shift moves one column by ``shift`` of its standard deviation.
Posts: one pool of synthetic posts per style is embedded once; each seed draws disjoint samples from
the pools (exchangeable under the null, so the permutation test's level is exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finpulse.monitoring.drift import DriftConfig, detect
from finpulse.monitoring.reference import build_snapshot

FEATURES = [f"f{i}_{kind}" for i, kind in enumerate(
    ("normal", "t3", "lognormal", "uniform", "normal", "t5", "count", "flag", "normal", "exp"))]


def draw_features(n: int, seed: int, shift: float = 0.0, column: int = 0, rho: float = 0.5) -> pd.DataFrame:
    """``n`` rows of the 10 realistic columns; column ``column`` moved by ``shift`` standard deviations."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    cov = rho * np.ones((10, 10)) + (1 - rho) * np.eye(10)
    z = rng.multivariate_normal(np.zeros(10), cov, n)
    u = stats.norm.cdf(z)
    cols = [z[:, 0], stats.t.ppf(u[:, 1], 3), np.exp(0.5 * z[:, 2]), u[:, 3], z[:, 4], stats.t.ppf(u[:, 5], 5),
            stats.poisson.ppf(u[:, 6], 3.0), (u[:, 7] > 0.7).astype(float), z[:, 8], stats.expon.ppf(u[:, 9])]
    x = np.column_stack(cols)
    if shift:
        x[:, column] += shift * x[:, column].std()
    return pd.DataFrame(x, columns=FEATURES)


@dataclass
class Rate:
    alarms: int
    seeds: int

    @property
    def rate(self) -> float:
        return self.alarms / self.seeds

    def to_dict(self) -> dict:
        return {"rate": round(self.rate, 4), "alarms": self.alarms, "seeds": self.seeds}


def feature_rate(seeds: int, *, n: int = 500, m: int = 500, shift: float = 0.0,
                 config: DriftConfig | None = None) -> Rate:
    """Share of seeds whose whole feature report alarms (reference n rows vs current m rows)."""
    config = config or DriftConfig()
    alarms = 0
    for s in range(seeds):
        ref = build_snapshot(draw_features(n, 10_000 + s), FEATURES, None, None, None, seed=s)
        cur = build_snapshot(draw_features(m, 20_000 + s, shift=shift), FEATURES, None, None, None, seed=s)
        alarms += detect(ref, cur, config).alarm
    return Rate(alarms, seeds)


@dataclass
class PostPool:
    """Posts of one style: their labels, scores and encoder embeddings (computed once)."""

    labels: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray


def post_pool(style_kwargs: dict, n: int, seed: int, embed: Callable[[list[str]], np.ndarray]) -> PostPool:
    """``n`` synthetic posts (shipped prices, VADER scores) in a style, embedded with ``embed``."""
    from finpulse.data.synthetic import PostStyle, generate_posts
    from finpulse.data.vader import label_from_compound, vader_compound
    from finpulse.resources import load_prices

    prices = load_prices(["AAPL", "MSFT", "JPM", "XOM"])
    posts = generate_posts(prices, posts_per_day=2.0, seed=seed, duplicate_rate=0.0, style=PostStyle(**style_kwargs))
    posts = posts.sample(n=min(n, len(posts)), random_state=seed).reset_index(drop=True)
    scores = vader_compound(posts["text"])
    return PostPool(label_from_compound(scores), scores, embed(posts["text"].tolist()))


def _post_snapshot(pool: PostPool, idx: np.ndarray, seed: int):
    frame = pd.DataFrame({"label": pool.labels[idx], "score": pool.scores[idx]})
    return build_snapshot(None, None, frame, pool.embeddings[idx], None, sample_size=len(idx), seed=seed)


def post_rates(base: PostPool, shifted: PostPool, seeds: int, *, n: int = 200,
               config: DriftConfig | None = None, mmd_only: bool = False) -> tuple[Rate, Rate]:
    """(false alarms: base vs base, detections: base vs shifted) over ``seeds`` disjoint draws of ``n``.
    ``mmd_only`` keeps only the embeddings (the encoder's evidence alone)."""
    config = config or DriftConfig(permutations=500)
    fa = power = 0
    for s in range(seeds):
        rng = np.random.default_rng(s)
        perm = rng.permutation(len(base.labels))
        ref_idx, null_idx = perm[:n], perm[n:2 * n]
        alt_idx = rng.choice(len(shifted.labels), n, replace=False)
        ref = _post_snapshot(base, ref_idx, s)
        null, alt = _post_snapshot(base, null_idx, s), _post_snapshot(shifted, alt_idx, s)
        if mmd_only:
            for snap in (ref, null, alt):
                snap.class_counts, snap.scores = None, None
        fa += detect(ref, null, config).alarm
        power += detect(ref, alt, config).alarm
    return Rate(fa, seeds), Rate(power, seeds)
