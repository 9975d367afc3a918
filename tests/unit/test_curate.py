"""Curation: dedupe rules, VADER labels and thresholds, model scores replacing VADER."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finpulse.data import curate
from finpulse.data.calendar import trading_calendar
from finpulse.data.vader import label_from_compound, vader_compound

CAL = trading_calendar(pd.Series(pd.bdate_range("2021-01-04", periods=10).date))


def _raw(rows: list[dict]) -> pd.DataFrame:
    base = {"author": "u1", "likes": "0", "reposts": "0", "source": "t"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_dedupe_by_id_and_by_author_text_window() -> None:
    raw = _raw([
        {"post_id": "1", "ticker": "AAPL", "created_at": "2021-01-05T15:00:00Z", "text": "great quarter"},
        {"post_id": "1", "ticker": "AAPL", "created_at": "2021-01-05T15:00:00Z", "text": "great quarter"},  # same id
        {"post_id": "1", "ticker": "MSFT", "created_at": "2021-01-05T15:00:00Z", "text": "great quarter"},  # other ticker
        {"post_id": "2", "ticker": "AAPL", "created_at": "2021-01-05T15:00:30Z", "text": "great quarter"},  # 30 s later
        {"post_id": "3", "ticker": "AAPL", "created_at": "2021-01-05T15:05:00Z", "text": "great quarter"},  # 5 min later
        {"post_id": "4", "ticker": "AAPL", "created_at": "2021-01-05T15:00:10Z", "text": "great quarter",
         "author": "u2"},  # another author
    ])
    scored, rejected = curate.process_posts(raw, CAL)
    assert rejected.empty
    kept, dropped = curate.dedupe_posts(scored)
    assert dropped == 2
    assert sorted(zip(kept["post_id"], kept["ticker"], strict=True)) == [
        ("1", "AAPL"), ("1", "MSFT"), ("3", "AAPL"), ("4", "AAPL")]
    # order of input does not change the result
    kept2, _ = curate.dedupe_posts(scored.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(kept, kept2)


def test_vader_thresholds() -> None:
    assert label_from_compound(np.array([0.06, 0.05, 0.0, -0.05, -0.06])).tolist() == [
        "positive", "neutral", "neutral", "neutral", "negative"]
    v = vader_compound(["Terrible, awful losses", "Great, fantastic gains", "The report is on Tuesday"])
    assert v[0] < -0.05 and v[1] > 0.05 and abs(v[2]) <= 0.05


def test_process_posts_scores_and_quarantines_outside_calendar() -> None:
    raw = _raw([
        {"post_id": "1", "ticker": "$aapl", "created_at": "2021-01-05T15:00:00Z", "text": "Awful crash, terrible"},
        {"post_id": "2", "ticker": "AAPL", "created_at": "2030-01-01T00:00:00Z", "text": "from the future"},
    ])
    scored, rejected = curate.process_posts(raw, CAL)
    assert scored["ticker"].tolist() == ["AAPL"] and scored["label"].tolist() == ["negative"]
    assert scored["scorer"].tolist() == ["vader"] and str(scored["trading_day"].iloc[0]) == "2021-01-05"
    assert rejected["reason"].tolist() == ["outside the price calendar"]


def test_model_scores_replace_vader() -> None:
    raw = _raw([
        {"post_id": "1", "ticker": "AAPL", "created_at": "2021-01-05T15:00:00Z", "text": "great"},
        {"post_id": "2", "ticker": "AAPL", "created_at": "2021-01-05T15:01:00Z", "text": "bad"},
    ])
    scored, _ = curate.process_posts(raw, CAL)
    scores = pd.DataFrame({"post_id": ["1"], "ticker": ["AAPL"], "p_negative": [0.7], "p_neutral": [0.2],
                           "p_positive": [0.1], "label": ["negative"], "score": [-0.6], "scorer": ["m/v1"]})
    out, n = curate.apply_model_scores(scored, scores)
    assert n == 1
    row = out.set_index("post_id").loc["1"]
    assert row["label"] == "negative" and row["score"] == -0.6 and row["scorer"] == "m/v1"
    assert out.set_index("post_id").loc["2", "scorer"] == "vader"
