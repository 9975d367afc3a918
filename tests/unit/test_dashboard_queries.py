"""The dashboard's pure aggregations: each checked against a direct computation on small frames."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finpulse.dashboard import queries
from finpulse.data.features import aggregate_daily_sentiment, build_daily_features


def _posts(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(-1, 1, n)
    label = np.where(score > 0.3, "positive", np.where(score < -0.3, "negative", "neutral"))
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 20, n), unit="D")
    return pd.DataFrame({"ticker": rng.choice(["AAPL", "MSFT"], n), "trading_day": day.date, "date": day,
                         "created_at": day + pd.to_timedelta(rng.integers(0, 3600, n), unit="s"),
                         "source": rng.choice(["synthetic", "stocknet"], n), "label": label, "score": score,
                         "likes": rng.integers(0, 50, n), "reposts": rng.integers(0, 5, n),
                         "text": [f"post {i}" for i in range(n)]})


def test_daily_from_features_are_the_etl_aggregates_and_a_source_subset_aggregates_the_same_way() -> None:
    posts = _posts()
    days = pd.date_range("2020-01-01", periods=20).date
    prices = pd.DataFrame([{"ticker": t, "date": d, "close": 100.0 + i, "volume": 1000}
                           for t in ("AAPL", "MSFT") for i, d in enumerate(days)])
    direct = aggregate_daily_sentiment(posts)
    daily = queries.daily_from_features(build_daily_features(prices, direct, "vader"))
    assert daily["sent_count"].tolist() == direct["sent_count"].tolist()
    for col in ("sent_mean", "sent_pos_share", "sent_neg_share"):
        np.testing.assert_allclose(daily[col], direct[col], rtol=1e-12)
    every = queries.daily_for_sources(posts, ["synthetic", "stocknet"])
    np.testing.assert_allclose(every["sent_mean"], daily["sent_mean"], rtol=1e-12)
    only = queries.daily_for_sources(posts, ["stocknet"])
    assert only["sent_count"].sum() == (posts["source"] == "stocknet").sum()
    ref = aggregate_daily_sentiment(posts[posts["source"] == "stocknet"])
    np.testing.assert_allclose(only["sent_mean"], ref["sent_mean"], rtol=1e-12)


def test_filter_rows_by_ticker_source_and_inclusive_dates() -> None:
    posts = _posts()
    out = queries.filter_rows(posts, tickers=["AAPL"], sources=["stocknet"], start=dt.date(2020, 1, 5),
                              end=dt.date(2020, 1, 10))
    expected = posts[(posts["ticker"] == "AAPL") & (posts["source"] == "stocknet")
                     & (posts["date"] >= "2020-01-05") & (posts["date"] <= "2020-01-10")]
    assert out.index.tolist() == expected.index.tolist() and len(out) > 0


def test_class_mix_shares_sum_to_one_and_match_the_labels() -> None:
    posts = _posts()
    mix = queries.class_mix(queries.daily_for_sources(posts, ["synthetic", "stocknet"]), "W")
    sums = mix.groupby("period")["share"].sum()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
    first = mix["period"].min()
    week = posts[posts["date"].dt.to_period("W").dt.start_time == first]
    got = mix[(mix["period"] == first) & (mix["label"] == "positive")]["share"].iat[0]
    assert got == pytest.approx((week["label"] == "positive").mean())


def test_score_histogram_counts_every_post_once_per_label() -> None:
    posts = _posts()
    hist = queries.score_histogram(posts, bins=10)
    assert hist["count"].sum() == len(posts)
    assert hist.groupby("label")["count"].sum().to_dict() == posts["label"].value_counts().to_dict()


def test_top_posts_are_the_extremes() -> None:
    posts = _posts()
    top = queries.top_posts(posts, n=3)
    assert top["positive"]["score"].tolist() == sorted(posts["score"].nlargest(3).tolist(), reverse=True)
    assert top["negative"]["score"].tolist() == sorted(posts["score"].nsmallest(3).tolist())


def _signal(n_days: int = 300, beta: float = 0.5, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for t in ("AAPL", "MSFT"):
        s = rng.normal(size=n_days)
        ret = np.empty(n_days)
        ret[0] = rng.normal()
        ret[1:] = beta * s[:-1] + rng.normal(size=n_days - 1)  # ret at t+1 follows sentiment at t
        frames.append(pd.DataFrame({"ticker": t, "date": pd.bdate_range("2020-01-01", periods=n_days),
                                    "sent_mean": s, "sent_count": 3, "ret_1d": ret,
                                    "target_ret_1d": np.append(ret[1:], np.nan), "has_posts": True}))
    return pd.concat(frames, ignore_index=True)


def test_signal_frame_drops_the_unknown_future_and_days_without_posts() -> None:
    feats = _signal()
    feats.loc[3, "sent_count"] = 0
    sig = queries.signal_frame(feats)
    assert sig["target_ret_1d"].notna().all() and (sig["sent_count"] > 0).all()
    assert len(sig) == len(feats) - 2 - 1


def test_pearson_and_correlation_table_match_scipy() -> None:
    sig = queries.signal_frame(_signal())
    table = queries.correlation_table(sig).set_index("scope")
    ref = stats.pearsonr(sig["sent_mean"], sig["target_ret_1d"])
    assert table.loc["pooled", "r"] == pytest.approx(ref.statistic) and table.loc["pooled", "p"] == pytest.approx(ref.pvalue)
    aapl = sig[sig["ticker"] == "AAPL"]
    assert table.loc["AAPL", "r"] == pytest.approx(stats.pearsonr(aapl["sent_mean"], aapl["target_ret_1d"]).statistic)
    assert table.loc["pooled", "n"] == len(sig) and table.loc["pooled", "slope"] == pytest.approx(0.5, abs=0.15)


def test_fit_line_band_contains_the_fit_and_narrows_at_the_mean() -> None:
    sig = queries.signal_frame(_signal())
    band = queries.fit_line(sig["sent_mean"], sig["target_ret_1d"], points=41)
    assert (band["lo"] <= band["fit"]).all() and (band["fit"] <= band["hi"]).all()
    width = band["hi"] - band["lo"]
    assert width.idxmin() not in (0, len(band) - 1)  # narrowest near x's mean, widest at the ends
    slope = (band["fit"].iat[-1] - band["fit"].iat[0]) / (band["x"].iat[-1] - band["x"].iat[0])
    assert slope == pytest.approx(np.polyfit(sig["sent_mean"], sig["target_ret_1d"], 1)[0])


def test_lagged_xcorr_peaks_at_the_planted_lag_and_lag_one_is_the_target() -> None:
    feats = _signal()
    feats.loc[feats.index[5:200:3], "sent_count"] = 0  # days without posts: shifts still count trading days
    xc = queries.lagged_xcorr(feats).set_index("lag")
    assert xc["r"].idxmax() == 1
    sig = queries.signal_frame(feats)
    assert xc.loc[1, "r"] == pytest.approx(stats.pearsonr(sig["sent_mean"], sig["target_ret_1d"]).statistic)
    assert xc.loc[1, "n"] == len(sig)


def test_rolling_corr_equals_pearson_on_each_window() -> None:
    sig = queries.signal_frame(_signal(n_days=120))
    roll = queries.rolling_corr(sig, window=30, min_pairs=10).set_index("date")
    dates = sorted(sig["date"].unique())
    end = dates[59]
    window = sig[(sig["date"] > dates[29]) & (sig["date"] <= end)]
    assert roll.loc[end, "n"] == len(window)
    assert roll.loc[end, "r"] == pytest.approx(stats.pearsonr(window["sent_mean"], window["target_ret_1d"]).statistic)
    assert np.isnan(roll.loc[dates[3], "r"])  # fewer than min_pairs pairs


def test_version_counts_flag_what_does_not_reconcile() -> None:
    good = {"version": "a", "created_at": "2026-01-02", "counts": {"posts": {"rows_in": 10, "rows_out": 7, "deduped": 2,
                                                                             "quarantined": 1}}}
    bad = {"version": "b", "created_at": "2026-01-01", "counts": {"posts": {"rows_in": 10, "rows_out": 7, "deduped": 1,
                                                                            "quarantined": 1}}}
    table = queries.version_counts([bad, good])
    assert table["version"].tolist() == ["a", "b"]  # newest first
    assert table["reconciles"].tolist() == [True, False]


def test_quarantine_examples_keep_a_few_rows_per_reason_with_totals() -> None:
    q = pd.DataFrame({"dataset": "posts", "source": "f.csv", "raw": [f"{{{i}}}" for i in range(7)],
                      "reason": ["empty text"] * 5 + ["invalid ticker"] * 2, "run_id": "r"})
    ex = queries.quarantine_examples(q, per_reason=3)
    assert ex.groupby("reason").size().to_dict() == {"empty text": 3, "invalid ticker": 2}
    assert ex.groupby("reason")["total"].first().to_dict() == {"empty text": 5, "invalid ticker": 2}


def test_synthetic_sources_are_labelled() -> None:
    assert "generated" in queries.source_label("synthetic") and queries.source_label("stocknet") == "stocknet"
