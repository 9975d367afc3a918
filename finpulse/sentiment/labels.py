"""VADER weak labels: the original design's sentiment, and the floor every model must beat.

Thresholds are the original design's: compound above 0.05 is positive, below -0.05 negative,
otherwise neutral.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    # Loading the lexicon takes ~50 ms: once per process.
    return SentimentIntensityAnalyzer()


def vader_compound(texts: Iterable[str]) -> np.ndarray:
    """VADER compound score in [-1, 1] per text."""
    analyzer = _analyzer()
    return np.fromiter((analyzer.polarity_scores(str(t))["compound"] for t in texts), dtype=np.float64)


def label_from_compound(values: np.ndarray, pos: float = POSITIVE_THRESHOLD, neg: float = NEGATIVE_THRESHOLD) -> np.ndarray:
    """Map compound scores to ``negative`` / ``neutral`` / ``positive``."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(v > pos, "positive", np.where(v < neg, "negative", "neutral")).astype(object)
