"""Pure serving core: canary routing, day aggregates, feature look-ups, model slots."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pandas as pd
import pytest

from finpulse.serving.errors import BadInput, ModelNotReady, NoFeatures, UnknownTicker, error_from_dict, unwrap
from finpulse.serving.feature_store import FeatureStore, apply_signal, day_aggregate
from finpulse.serving.services import ForecastService
from finpulse.serving.slots import CANARY, STABLE, ModelSlot, key_fraction, pick_slot
from tests.support.serving import make_features


def test_pick_slot_weights_and_stickiness():
    rng = random.Random(0)  # noqa: S311 - seeded traffic split under test
    picks = [pick_slot(0.2, None, rng) for _ in range(20_000)]
    assert abs(picks.count(CANARY) / len(picks) - 0.2) < 0.01
    assert all(pick_slot(0.0, f"k{i}") == STABLE for i in range(100))
    assert all(pick_slot(1.0, f"k{i}") == CANARY for i in range(100))
    # sticky: a key always lands on the same side, and keys spread by weight
    assert {pick_slot(0.3, "user-42") for _ in range(50)} == {pick_slot(0.3, "user-42")}
    share = np.mean([pick_slot(0.3, f"user-{i}") == CANARY for i in range(5000)])
    assert abs(share - 0.3) < 0.03
    # raising the weight only moves keys stable -> canary (monotone), never back
    moved_back = [k for k in (f"u{i}" for i in range(2000)) if pick_slot(0.1, k) == CANARY and pick_slot(0.2, k) == STABLE]
    assert moved_back == []
    assert 0.0 <= key_fraction("x") < 1.0


def test_errors_round_trip_through_dicts():
    for cls, status in ((ModelNotReady, 503), (UnknownTicker, 404), (BadInput, 422)):
        err = error_from_dict(cls("why").to_dict())
        assert isinstance(err, cls) and err.status == status and err.detail == "why"
    assert unwrap({"ok": 1}) == {"ok": 1}
    with pytest.raises(UnknownTicker):
        unwrap(UnknownTicker("nope").to_dict())


def test_day_aggregate_matches_definitions():
    scores = [{"label": "positive", "score": 0.8}, {"label": "negative", "score": -0.6},
              {"label": "neutral", "score": 0.1}, {"label": "positive", "score": 0.5}]
    agg = day_aggregate(scores)
    assert agg["sent_count"] == 4
    assert agg["sent_mean"] == pytest.approx(0.2)
    assert agg["sent_weighted"] == pytest.approx(agg["sent_mean"])  # no engagement: equal weights
    assert agg["sent_pos_share"] == 0.5 and agg["sent_neg_share"] == 0.25
    weighted = day_aggregate(scores, likes=[19, 0, 0, 0], reposts=[0, 0, 0, 0])  # weight 1 + log(20)
    w = 1 + np.log(20)
    assert weighted["sent_weighted"] == pytest.approx((w * 0.8 - 0.6 + 0.1 + 0.5) / (w + 3))
    assert day_aggregate([])["sent_count"] == 0


def test_serving_and_the_etl_build_identical_sentiment_features():
    """Training/serving skew guard: the same scored posts through the ETL's reference path and through
    what /v1/signal computes give the same feature values, engagement weighting included."""
    from finpulse.data import reference, sources, synthetic
    from finpulse.resources import load_prices

    prices = load_prices(["AAPL"])
    prices = prices[pd.to_datetime(prices["date"]) >= pd.Timestamp("2020-06-01")]
    posts = synthetic.generate_posts(prices, posts_per_day=8, seed=3)
    rng = np.random.default_rng(0)
    posts["likes"], posts["reposts"] = rng.integers(0, 500, len(posts)), rng.integers(0, 50, len(posts))
    out = reference.build_pandas(reference.prices_to_raw(prices), sources.raw_frame(posts, sources.RAW_POST_COLUMNS))
    features, kept = out["daily_features"], out["scored_posts"]
    assert kept["likes"].sum() > 0  # engagement survives curation, so the weighting is exercised
    checked = 0
    for day, g in kept.groupby("trading_day"):
        served = day_aggregate(g[["label", "score"]].to_dict("records"), g["likes"].tolist(), g["reposts"].tolist())
        row = features[(features["ticker"] == "AAPL") & (pd.to_datetime(features["date"]).dt.date == day)].iloc[0]
        for col, value in served.items():
            assert value == pytest.approx(row[col], rel=1e-9, abs=1e-12), (day, col)
        checked += 1
    assert checked > 20


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_features(["AAPL", "MSFT"], start="2020-01-01")


def test_feature_store_as_of_lookups(features):
    store = FeatureStore(features)
    assert store.tickers == ["AAPL", "MSFT"]
    latest = store.history("AAPL", None, rows=30)
    assert len(latest) == 30 and latest["date"].iloc[-1] == store.last_date("AAPL")
    h = store.history("AAPL", dt.date(2020, 6, 7), rows=10)  # a Sunday: the Friday before is used
    assert h["date"].iloc[-1] == dt.date(2020, 6, 5) and (h["ticker"] == "AAPL").all()
    with pytest.raises(UnknownTicker):
        store.history("ZZZZ")
    with pytest.raises(NoFeatures):
        store.history("AAPL", dt.date(2019, 1, 1))
    with pytest.raises(NoFeatures):
        store.history("AAPL", dt.date(2030, 1, 1), max_staleness_days=7)


def test_apply_signal_replaces_day_sentiment_and_recomputes_prices(features):
    from finpulse.data.features import price_features

    hist = FeatureStore(features).history("AAPL", rows=60)
    agg = day_aggregate([{"label": "positive", "score": 0.9}, {"label": "positive", "score": 0.7}])
    out = apply_signal(hist, agg)
    assert out["sent_mean"].iloc[-1] == pytest.approx(0.8) and out["sent_count"].iloc[-1] == 2
    assert bool(out["has_posts"].iloc[-1])
    pd.testing.assert_frame_equal(out.iloc[:-1].reset_index(drop=True)[["sent_mean", "close"]],
                                  hist.iloc[:-1].reset_index(drop=True)[["sent_mean", "close"]])
    closes = [float(c) for c in hist["close"].iloc[-5:]]
    closes[-1] *= 1.10  # the as-of day closed 10% higher than the stored close
    out = apply_signal(hist, None, closes)
    assert out["close"].iloc[-1] == pytest.approx(closes[-1])
    expected = price_features(out[["ticker", "date", "close", "volume"]])
    assert out["ret_1d"].iloc[-1] == pytest.approx(expected["ret_1d"].iloc[-1])
    assert out["ret_1d"].iloc[-1] == pytest.approx(hist["ret_1d"].iloc[-1] + np.log(1.10))
    assert out["ret_1d"].iloc[-2] == pytest.approx(hist["ret_1d"].iloc[-2])


class _Echo:
    version = "echo-1"

    def __init__(self, spec: str):
        if spec == "broken":
            raise OSError("no such model")
        self.spec = spec


def load_echo(spec: str, **_: object) -> _Echo:
    return _Echo(spec)


def test_model_slot_swaps_and_keeps_old_model_on_failure():
    slot = ModelSlot("sentiment")
    with pytest.raises(ModelNotReady, match="no model configured"):
        slot.require()
    loader = f"{__name__}:load_echo"
    assert slot.load("a", loader) and slot.require().spec == "a" and slot.version == "echo-1"
    assert not slot.load("a", loader)  # same spec: no reload
    assert not slot.load("broken", loader)
    assert slot.require().spec == "a" and "no such model" in slot.error  # still serving the old one
    assert slot.load(None, loader) and not slot.ready
    broken = ModelSlot("forecast")
    broken.load("broken", loader)
    with pytest.raises(ModelNotReady, match="no such model"):
        broken.require()


def test_forecast_fast_path_matches_a_rebuild_from_history(features, tmp_path):
    """Plain look-ups slice rows prepared once per (model, features); the answer must equal the
    model run on the request's own history, on every day including the warm-up edge."""
    from finpulse.forecast.model import load_forecaster
    from tests.support.serving import make_tiny_forecaster

    service = ForecastService()
    service.slot.load(str(make_tiny_forecaster(tmp_path / "fc", features)), "finpulse.forecast.model:load_forecaster")
    service.store = FeatureStore(features)
    model = load_forecaster(tmp_path / "fc")
    rows = model.lookback + service.context_rows
    days = sorted(features.loc[features["ticker"] == "MSFT", "date"].unique())
    probe = [*days[:35], *days[35::37], days[-1]]  # the first days have too few complete rows
    got = service.predict([{"ticker": "MSFT", "as_of": d} for d in probe])
    assert service._prepared_for is not None and set(service._prepared) == {"MSFT"}
    errors = 0
    for d, g in zip(probe, got, strict=True):
        try:
            want = model.predict_next(service.store.history("MSFT", d, rows))
        except ValueError:
            assert g["error"]["status"] == 422 and "not enough history" in g["error"]["detail"]
            errors += 1
            continue
        assert g["as_of"] == want["as_of"] == pd.Timestamp(d).date()
        for k in ("predicted_return", "predicted_close", "low", "high"):
            assert g[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9)
    assert 0 < errors < len(probe)
    # new features replace the prepared rows: the cache is keyed by the (model, store) pair
    service.store = FeatureStore(features[features["date"] <= days[-10]])
    assert service.predict([{"ticker": "MSFT"}])[0]["as_of"] == pd.Timestamp(days[-10]).date()
