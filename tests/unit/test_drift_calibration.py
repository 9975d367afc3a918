"""The drift report is calibrated, and shown to be: false alarms <= 5% over same-distribution seeds,
power >= 0.9 on planted shifts (a 0.5-sigma shift in one of 10 features; a changed vocabulary and class
mix in synthetic posts, seen through the shipped MiniLM encoder's embeddings)."""

from __future__ import annotations

import pytest

from finpulse.monitoring.calibration import feature_rate, post_pool, post_rates
from finpulse.monitoring.drift import DriftConfig

SHIFTED_POSTS = {"vocabulary_shift": 0.4, "mood_shift": 0.4}


def test_feature_report_false_alarm_rate_at_most_alpha() -> None:
    """10 correlated features, n = m = 500, 20 tests per report: Holm keeps the report at alpha.
    (Without the correction about 40% of these reports would alarm; with the folklore PSI > 0.1 rule, more.)"""
    rate = feature_rate(60, n=500, m=500)
    assert rate.seeds >= 20 and rate.rate <= 0.05


def test_feature_report_power_on_half_sigma_shift() -> None:
    rate = feature_rate(20, n=500, m=500, shift=0.5)
    assert rate.rate >= 0.9


def test_uncorrected_tests_would_not_be_calibrated() -> None:
    """The check above fails when the correction is taken away (alpha per test = alpha per report)."""
    from finpulse.monitoring import drift

    original = drift.holm
    try:
        drift.holm = lambda p, alpha: (__import__("numpy").asarray(p) <= alpha, __import__("numpy").full(len(p), alpha))
        assert feature_rate(30).rate > 0.05
    finally:
        drift.holm = original


@pytest.fixture(scope="module")
def pools():
    from finpulse.sentiment.model import load_classifier

    clf = load_classifier("minilm", batch_size=64)
    return post_pool({}, 400, 1, clf.embed), post_pool(SHIFTED_POSTS, 200, 2, clf.embed)


def test_posts_report_calibrated_and_detects_changed_vocabulary_and_mix(pools) -> None:
    base, shifted = pools
    false_alarms, power = post_rates(base, shifted, 20, n=200, config=DriftConfig(permutations=500))
    assert false_alarms.rate <= 0.05 and power.rate >= 0.9


def test_embedding_mmd_alone_detects_the_changed_vocabulary(pools) -> None:
    base, shifted = pools
    _, power = post_rates(base, shifted, 20, n=200, config=DriftConfig(permutations=500), mmd_only=True)
    assert power.rate >= 0.9
