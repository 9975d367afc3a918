"""VADER: the curation step that gives every post a sentiment score before any model exists.

The original design's sentiment, the floor every model must beat, and the weak labels the demo's
fine-tune learns from. Thresholds are the original design's: compound above 0.05 is positive,
below -0.05 negative, otherwise neutral. It lives in ``data/`` because the ETL scores with it; the
sentiment package reads it from here (``sentiment.labels``), never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
SCORER = "vader"  # the ``scorer`` column's value for posts VADER scored


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


def score_posts(posts: pd.DataFrame) -> pd.DataFrame:
    """Set the scored-post columns from VADER on ``posts`` (in place, and returned): no class
    probabilities (NaN), the label, the compound score and ``scorer="vader"``."""
    compound = vader_compound(posts["text"])
    posts["p_negative"] = np.nan
    posts["p_neutral"] = np.nan
    posts["p_positive"] = np.nan
    posts["label"] = label_from_compound(compound)
    posts["score"] = compound
    posts["scorer"] = SCORER
    return posts
