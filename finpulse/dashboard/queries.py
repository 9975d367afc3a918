"""Pure pandas aggregations behind the dashboard's charts (no Streamlit here, so they are unit-tested).

What the package already computes is reused, never recomputed: daily sentiment aggregates come from
:func:`finpulse.data.features.aggregate_daily_sentiment` and next-day returns from the ETL's
``daily_features`` (``target_ret_1d``). Pages cache these results with ``st.cache_data``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from finpulse.data.features import aggregate_daily_sentiment
from finpulse.data.schemas import SENTIMENT_LABELS

SYNTHETIC = "synthetic"


def source_label(source: str) -> str:
    """How a post source is shown: generated posts always say so."""
    return f"{source} (generated, not real posts)" if source == SYNTHETIC else source


# ------------------------------------------------------------------------------------------ posts and prices


DAILY_COLUMNS = ["ticker", "date", "sent_count", "sent_mean", "sent_pos_share", "sent_neg_share"]


def daily_from_features(features: pd.DataFrame) -> pd.DataFrame:
    """Per (ticker, day with posts): the ETL's own daily sentiment aggregates over every source, read from
    ``daily_features`` (nothing recomputed: a page over a million posts needs no post to draw them)."""
    f = features[features["has_posts"].to_numpy(dtype=bool)]
    return f[DAILY_COLUMNS].assign(date=pd.to_datetime(f["date"])).reset_index(drop=True)


def daily_for_sources(posts: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """The same aggregates over the chosen sources only (:func:`aggregate_daily_sentiment`, the ETL's)."""
    agg = aggregate_daily_sentiment(posts[posts["source"].isin(list(sources)).to_numpy()])
    return agg[DAILY_COLUMNS].assign(date=pd.to_datetime(agg["date"]), sent_count=agg["sent_count"].astype("int64"))


def filter_rows(df: pd.DataFrame, *, tickers: Sequence[str] | None = None, start: dt.date | None = None,
                end: dt.date | None = None, sources: Sequence[str] | None = None, date_col: str = "date") -> pd.DataFrame:
    """Rows of the chosen tickers, sources and dates (inclusive); ``None`` keeps everything."""
    keep = np.ones(len(df), dtype=bool)
    if tickers is not None:
        keep &= df["ticker"].isin(list(tickers)).to_numpy()
    if sources is not None and "source" in df:
        keep &= df["source"].isin(list(sources)).to_numpy()
    dates = pd.to_datetime(df[date_col])
    if start is not None:
        keep &= (dates >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (dates <= pd.Timestamp(end)).to_numpy()
    return df[keep]


def class_mix(daily: pd.DataFrame, freq: str = "W") -> pd.DataFrame:
    """Share of negative, neutral and positive posts per period over the selected tickers (long format)."""
    if daily.empty:
        return pd.DataFrame(columns=["period", "label", "share", "posts"])
    d = daily.assign(pos=daily["sent_pos_share"] * daily["sent_count"], neg=daily["sent_neg_share"] * daily["sent_count"])
    g = d.groupby(pd.to_datetime(d["date"]).dt.to_period(freq).dt.start_time)[["sent_count", "pos", "neg"]].sum()
    n = g["sent_count"].astype("float64")
    wide = pd.DataFrame({"negative": g["neg"] / n, "neutral": 1.0 - (g["pos"] + g["neg"]) / n, "positive": g["pos"] / n,
                         "posts": g["sent_count"]})
    wide.index.name = "period"
    long = wide.reset_index().melt(id_vars=["period", "posts"], value_vars=list(SENTIMENT_LABELS),
                                   var_name="label", value_name="share")
    return long[["period", "label", "share", "posts"]]


def score_histogram(posts: pd.DataFrame, bins: int = 40) -> pd.DataFrame:
    """Counts of post scores in ``bins`` equal bins over the scores' range within [-1, 1], per label
    (pre-binned: a million points never travel to the browser)."""
    all_scores = np.clip(posts["score"].to_numpy(dtype="float64"), -1.0, 1.0)
    lo, hi = (float(all_scores.min()), float(all_scores.max())) if len(all_scores) else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    edges = np.linspace(lo, hi, bins + 1)
    rows = []
    for label in SENTIMENT_LABELS:
        scores = posts.loc[posts["label"] == label, "score"].to_numpy(dtype="float64")
        counts, _ = np.histogram(np.clip(scores, lo, hi), bins=edges)
        rows.append(pd.DataFrame({"label": label, "bin_left": edges[:-1], "bin_right": edges[1:], "count": counts}))
    out = pd.concat(rows, ignore_index=True)
    out["bin_center"] = (out["bin_left"] + out["bin_right"]) / 2
    return out


def top_posts(posts: pd.DataFrame, n: int = 5) -> dict[str, pd.DataFrame]:
    """The ``n`` most positive and most negative posts (by score), with what identifies them."""
    cols = [c for c in ("created_at", "ticker", "score", "label", "text", "author", "likes", "reposts", "source")
            if c in posts]
    ranked = posts.sort_values(["score", "created_at"], kind="mergesort")
    return {"positive": ranked[ranked["score"] > 0].iloc[::-1].head(n)[cols].reset_index(drop=True),
            "negative": ranked[ranked["score"] < 0].head(n)[cols].reset_index(drop=True)}


# ------------------------------------------------------------------------------------------ signal


def signal_frame(features: pd.DataFrame, *, only_post_days: bool = True) -> pd.DataFrame:
    """Daily sentiment against the next day's return, from the ETL's daily features."""
    cols = ["ticker", "date", "sent_mean", "sent_count", "ret_1d", "target_ret_1d"]
    f = features[cols].dropna(subset=["target_ret_1d"])
    if only_post_days:
        f = f[f["sent_count"] > 0]
    f = f.assign(date=pd.to_datetime(f["date"]))
    return f.sort_values(["ticker", "date"]).reset_index(drop=True)


def pearson(x: Iterable[float], y: Iterable[float]) -> dict[str, float]:
    """Pearson r with its two-sided p-value (scipy), the OLS slope and the number of pairs."""
    xa, ya = np.asarray(list(x), dtype="float64"), np.asarray(list(y), dtype="float64")
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    if len(xa) < 3 or np.std(xa) == 0 or np.std(ya) == 0:
        return {"r": float("nan"), "p": float("nan"), "slope": float("nan"), "n": len(xa)}
    res = stats.pearsonr(xa, ya)
    slope = float(np.polyfit(xa, ya, 1)[0])
    return {"r": float(res.statistic), "p": float(res.pvalue), "slope": slope, "n": len(xa)}


def correlation_table(sig: pd.DataFrame, x: str = "sent_mean", y: str = "target_ret_1d") -> pd.DataFrame:
    """Pearson r, p-value, slope and n per ticker, plus a pooled row."""
    rows = [{"scope": t, **pearson(g[x], g[y])} for t, g in sig.groupby("ticker", sort=True)]
    rows.append({"scope": "pooled", **pearson(sig[x], sig[y])})
    return pd.DataFrame(rows, columns=["scope", "r", "p", "slope", "n"])


def fit_line(x: Iterable[float], y: Iterable[float], *, level: float = 0.95, points: int = 50) -> pd.DataFrame:
    """The OLS line of y on x over x's range with the confidence band of the mean at ``level``."""
    xa, ya = np.asarray(list(x), dtype="float64"), np.asarray(list(y), dtype="float64")
    n = len(xa)
    if n < 3 or np.std(xa) == 0:
        return pd.DataFrame(columns=["x", "fit", "lo", "hi"])
    slope, intercept = np.polyfit(xa, ya, 1)
    resid = ya - (intercept + slope * xa)
    s = np.sqrt(np.sum(resid**2) / (n - 2))
    grid = np.linspace(xa.min(), xa.max(), points)
    sxx = np.sum((xa - xa.mean()) ** 2)
    half = stats.t.ppf(0.5 + level / 2, n - 2) * s * np.sqrt(1 / n + (grid - xa.mean()) ** 2 / sxx)
    fit = intercept + slope * grid
    return pd.DataFrame({"x": grid, "fit": fit, "lo": fit - half, "hi": fit + half})


def lagged_xcorr(features: pd.DataFrame, lags: Sequence[int] = tuple(range(-5, 6)), *, only_post_days: bool = True,
                 x: str = "sent_mean") -> pd.DataFrame:
    """Pearson r of sentiment at day t with the return of day t+lag, pooled over the tickers given.

    ``features`` are daily features with every trading day (shifts count trading days, not rows with
    posts); lag 1 is the next-day return (``target_ret_1d``), lag 0 the same day's, negative lags ask
    whether posts follow past moves. Only days with posts count when ``only_post_days``.
    """
    f = features.sort_values(["ticker", "date"])
    keep = (f["sent_count"] > 0).to_numpy() if only_post_days else np.ones(len(f), dtype=bool)
    rows = []
    for lag in lags:
        shifted = f.groupby("ticker", sort=False, observed=True)["ret_1d"].shift(-lag)
        rows.append({"lag": lag, **pearson(f[x][keep], shifted[keep])})
    return pd.DataFrame(rows, columns=["lag", "r", "p", "slope", "n"])


def rolling_corr(sig: pd.DataFrame, window: int = 60, min_pairs: int = 20, x: str = "sent_mean",
                 y: str = "target_ret_1d") -> pd.DataFrame:
    """Pearson r of x and y over the last ``window`` dates, pooled over every row (ticker) in them.

    Exact pooled r from rolling sums of n, x, y, x², y², xy per date; NaN where fewer than
    ``min_pairs`` pairs."""
    if sig.empty:
        return pd.DataFrame(columns=["date", "r", "n"])
    d = pd.DataFrame({"date": sig["date"], "x": sig[x].astype("float64"), "y": sig[y].astype("float64")}).dropna()
    d = d.assign(xx=d["x"] ** 2, yy=d["y"] ** 2, xy=d["x"] * d["y"], n=1.0)
    sums = d.groupby("date", sort=True)[["n", "x", "y", "xx", "yy", "xy"]].sum()
    r = sums.rolling(window, min_periods=1).sum()
    cov = r["n"] * r["xy"] - r["x"] * r["y"]
    var = (r["n"] * r["xx"] - r["x"] ** 2) * (r["n"] * r["yy"] - r["y"] ** 2)
    corr = (cov / np.sqrt(var.where(var > 0))).where(r["n"] >= min_pairs)
    return pd.DataFrame({"date": sums.index, "r": corr.to_numpy(), "n": r["n"].astype("int64").to_numpy()})


# ------------------------------------------------------------------------------------------ data quality


def version_counts(manifests: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per ETL version and dataset: rows in, out, deduped, quarantined and whether in = out + deduped + quarantined."""
    rows = []
    for m in manifests:
        for dataset, c in m.get("counts", {}).items():
            rows.append({"version": m["version"], "created_at": m.get("created_at", ""), "dataset": dataset,
                         "rows_in": c["rows_in"], "rows_out": c["rows_out"], "deduped": c["deduped"],
                         "quarantined": c["quarantined"],
                         "reconciles": c["rows_in"] == c["rows_out"] + c["deduped"] + c["quarantined"]})
    cols = ["version", "created_at", "dataset", "rows_in", "rows_out", "deduped", "quarantined", "reconciles"]
    return pd.DataFrame(rows, columns=cols).sort_values(["created_at", "dataset"], ascending=[False, True],
                                                        kind="mergesort").reset_index(drop=True)


def quarantine_examples(quarantine: pd.DataFrame, per_reason: int = 3) -> pd.DataFrame:
    """The first ``per_reason`` rejected rows of each (dataset, reason), with the reason's total."""
    if quarantine.empty:
        return pd.DataFrame(columns=["dataset", "reason", "total", "source", "raw"])
    total = quarantine.groupby(["dataset", "reason"])["raw"].transform("size")
    q = quarantine.assign(total=total).groupby(["dataset", "reason"], sort=True).head(per_reason)
    return q[["dataset", "reason", "total", "source", "raw"]].reset_index(drop=True)


def inputs_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """The version's input files (dataset, uri, size, sha256 where recorded)."""
    rows = [{"dataset": ds, "uri": f.get("uri"), "bytes": f.get("size"), "sha256": f.get("sha256")}
            for ds, files in manifest.get("inputs", {}).items() if isinstance(files, list) for f in files]
    return pd.DataFrame(rows, columns=["dataset", "uri", "bytes", "sha256"])
