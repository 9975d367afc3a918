"""Pure feature functions: daily sentiment aggregates and technical price features.

Every feature at day t is computed from rows at or before t (backward rolling windows only);
the targets are the only columns that look at t+1, and they are named ``target_*``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finpulse.data.schemas import DAILY_FEATURES, PRICE_FEATURES

AGGREGATE_COLUMNS = ["ticker", "date", "sent_mean", "sent_count", "sent_pos_share", "sent_neg_share", "sent_weighted"]


def engagement_weight(likes: pd.Series, reposts: pd.Series) -> pd.Series:
    """Weight of a post in the engagement-weighted score: 1 + log(1 + likes + reposts), so one viral
    post counts more than a quiet one without drowning the day."""
    return 1.0 + np.log1p(likes.astype("float64") + reposts.astype("float64"))


def aggregate_daily_sentiment(scored: pd.DataFrame) -> pd.DataFrame:
    """Per (ticker, trading_day): mean score, post count, positive/negative shares and the
    engagement-weighted mean score."""
    if scored.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    df = pd.DataFrame({
        "ticker": scored["ticker"].to_numpy(),
        "date": pd.to_datetime(scored["trading_day"]).dt.date.to_numpy(),
        "score": scored["score"].astype("float64").to_numpy(),
        "pos": (scored["label"] == "positive").to_numpy(dtype="float64"),
        "neg": (scored["label"] == "negative").to_numpy(dtype="float64"),
        "w": engagement_weight(scored["likes"], scored["reposts"]).to_numpy(),
    })
    df["ws"] = df["w"] * df["score"]
    g = df.groupby(["ticker", "date"], sort=True)
    out = g.agg(sent_mean=("score", "mean"), sent_count=("score", "size"), sent_pos_share=("pos", "mean"),
                sent_neg_share=("neg", "mean"), ws=("ws", "sum"), w=("w", "sum")).reset_index()
    out["sent_weighted"] = out["ws"] / out["w"]
    return out[AGGREGATE_COLUMNS]


def rsi(close: pd.Series, window: int = 14) -> pd.Series:
    """Wilder's relative strength index in [0, 100]."""
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    rs = gain / loss.replace(0.0, np.nan)
    return (100 - 100 / (1 + rs)).where(loss != 0, 100.0).where(gain.notna())


def price_features(prices: pd.DataFrame) -> pd.DataFrame:
    """Technical features and targets for ONE ticker's prices sorted by date."""
    p = prices.sort_values("date").reset_index(drop=True)
    close = p["close"].astype("float64")
    logc = np.log(close)
    ret1 = logc.diff()
    out = pd.DataFrame({"ticker": p["ticker"], "date": p["date"], "close": close, "volume": p["volume"]})
    out["ret_1d"] = ret1
    out["ret_5d"] = logc.diff(5)
    out["ret_20d"] = logc.diff(20)
    out["ma_ratio_5"] = close / close.rolling(5).mean() - 1
    out["ma_ratio_20"] = close / close.rolling(20).mean() - 1
    out["vol_20"] = ret1.rolling(20).std()
    logv = np.log1p(p["volume"].astype("float64"))
    out["volume_z_20"] = (logv - logv.rolling(20).mean()) / logv.rolling(20).std()
    out["rsi_14"] = rsi(close, 14)
    out["target_ret_1d"] = ret1.shift(-1)
    out["target_close"] = close.shift(-1)
    return out


def build_daily_features(prices: pd.DataFrame, aggregates: pd.DataFrame, sentiment_source: str) -> pd.DataFrame:
    """One row per (ticker, price day): price features, the day's sentiment aggregates (zeros and
    ``has_posts=False`` on days without posts) and the targets. ``aggregates`` is the output of
    :func:`aggregate_daily_sentiment` (or empty)."""
    frames = [price_features(g) for _, g in prices.groupby("ticker", sort=True)]
    if not frames:
        return pd.DataFrame(columns=DAILY_FEATURES.names)
    feats = pd.concat(frames, ignore_index=True)
    feats["date"] = pd.to_datetime(feats["date"]).dt.date
    agg = aggregates.copy() if len(aggregates) else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    agg["date"] = pd.to_datetime(agg["date"]).dt.date
    df = feats.merge(agg, on=["ticker", "date"], how="left")
    df["has_posts"] = df["sent_count"].notna() & (df["sent_count"].fillna(0) > 0)
    df["sent_count"] = df["sent_count"].fillna(0).astype("int64")
    for col in ("sent_mean", "sent_pos_share", "sent_neg_share", "sent_weighted"):
        df[col] = df[col].astype("float64").fillna(0.0)
    df["sentiment_source"] = np.where(df["has_posts"], sentiment_source, "none")
    for col in PRICE_FEATURES:
        df[col] = df[col].astype("float64")
    return df[DAILY_FEATURES.names].sort_values(["ticker", "date"]).reset_index(drop=True)
