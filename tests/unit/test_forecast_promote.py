"""The promotion rule (pure)."""

from __future__ import annotations

from finpulse.forecast.promote import PromotionPolicy, decide

GOOD = {"wf_mae": 9.0, "wf_persistence_mae": 10.0, "wf_out_of_sample": 1.0}


def test_first_model_needs_only_to_clear_persistence():
    assert decide(GOOD, None, PromotionPolicy()).promote
    worse = decide({**GOOD, "wf_mae": 10.5}, None, PromotionPolicy())
    assert not worse.promote and "worse than persistence" in worse.reasons[0]
    assert decide({**GOOD, "wf_mae": 10.05}, None, PromotionPolicy(persistence_tolerance=0.01)).promote


def test_challenger_must_beat_champion_by_margin_under_same_protocol():
    champ = {"wf_mae": 9.5, "wf_persistence_mae": 10.0}
    assert decide(GOOD, champ, PromotionPolicy(margin=0.05), "k", "k").promote  # 9.0 <= 9.5 * 0.95
    d = decide(GOOD, champ, PromotionPolicy(margin=0.10), "k", "k")
    assert not d.promote and any("margin" in r for r in d.reasons)
    other = decide(GOOD, champ, PromotionPolicy(), "k1", "k2")
    assert not other.promote and any("protocol" in r for r in other.reasons)


def test_unevaluated_challenger_is_refused():
    d = decide({}, None, PromotionPolicy())
    assert not d.promote and "evaluate" in d.reasons[0]
