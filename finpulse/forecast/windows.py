"""Lookback windows per ticker, and the scaler that is fit on training days only.

A sample is one (ticker, as-of day t): the feature rows t-lookback+1..t of that ticker (never of
another ticker) and the target ``target_ret_1d`` = log(close_{t+1} / close_t). The price forecast
follows from the return: close_t * exp(predicted return).

The scaler's mean/std come from rows dated before ``train_end`` only, and it is saved with the model
(JSON), so the live path transforms exactly as training did.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from finpulse.data.schemas import PRICE_FEATURES, SENTIMENT_FEATURES

UNKNOWN_TICKER = 0  # embedding row for tickers the model never saw


def _as_date(value: object) -> dt.date:
    return pd.Timestamp(value).date()


def prepare_frame(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sort, make the flag numeric, read missing sentiment as 'no posts' (0) and drop warm-up rows.

    Warm-up rows (the first days of a ticker, where a 20-day feature is still undefined) are dropped
    rather than imputed: a made-up value there would be a feature the model never sees live.
    """
    out = df.sort_values(["ticker", "date"]).reset_index(drop=True).copy()
    out["date"] = pd.to_datetime(out["date"]).dt.date
    for col in (*SENTIMENT_FEATURES, "has_posts"):
        if col in columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).fillna(0.0)
    price_cols = [c for c in columns if c in PRICE_FEATURES]
    out[columns] = out[columns].astype(float)
    if price_cols:
        out = out[np.isfinite(out[price_cols].to_numpy()).all(axis=1)]
    return out.reset_index(drop=True)


@dataclass
class Scaler:
    """Per-feature standardisation plus a scale for the target (returns are ~1e-2; the net sees ~1)."""

    columns: list[str]
    mean: list[float]
    std: list[float]
    target_scale: float = 1.0

    @classmethod
    def fit(cls, df: pd.DataFrame, columns: list[str], before: dt.date | None = None) -> Scaler:
        """Fit on rows dated before ``before`` (all rows when None): the training period only."""
        rows = df if before is None else df[pd.to_datetime(df["date"]).dt.date < _as_date(before)]
        if rows.empty:
            raise ValueError("no training rows to fit the scaler on")
        x = rows[columns].astype(float).to_numpy()
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        std = np.where(~np.isfinite(std) | (std < 1e-12), 1.0, std)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        target = rows["target_ret_1d"].astype(float).to_numpy() if "target_ret_1d" in rows else np.array([])
        target = target[np.isfinite(target)]
        tscale = float(np.std(target)) if target.size > 1 and np.std(target) > 1e-12 else 1.0
        return cls(list(columns), mean.tolist(), std.tolist(), tscale)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        x = (df[self.columns].astype(float).to_numpy() - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class Windows:
    """Samples as arrays: x (n, lookback, features), scaled target y, and what is needed to score them."""

    x: np.ndarray
    y: np.ndarray  # target / scaler.target_scale; NaN where the next day is unknown
    ticker_idx: np.ndarray
    tickers: np.ndarray
    dates: np.ndarray  # datetime.date objects (as-of day)
    close: np.ndarray
    target_ret: np.ndarray
    target_close: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def between(self, start: dt.date | None = None, end: dt.date | None = None) -> Windows:
        """Samples whose as-of day is in [start, end)."""
        d = pd.to_datetime(pd.Series(self.dates)).dt.date.to_numpy()
        mask = np.ones(len(self), dtype=bool)
        if start is not None:
            mask &= d >= _as_date(start)
        if end is not None:
            mask &= d < _as_date(end)
        return self.subset(mask)

    def with_target(self) -> Windows:
        return self.subset(np.isfinite(self.y))


def ticker_index(tickers: list[str]) -> dict[str, int]:
    """Embedding rows: 1..n for known tickers; 0 is kept for unknown ones."""
    return {t: i + 1 for i, t in enumerate(sorted(set(tickers)))}


def build_windows(df: pd.DataFrame, scaler: Scaler, lookback: int, tickers: dict[str, int],
                  prepared: bool = False) -> Windows:
    """All windows of every ticker in ``df`` (one row per ticker and day). No window crosses tickers."""
    frame = df if prepared else prepare_frame(df, scaler.columns)
    parts: list[dict[str, np.ndarray]] = []
    n_feat = len(scaler.columns)
    for ticker, g in frame.groupby("ticker", sort=True):
        n = len(g)
        if n < lookback:
            continue
        feats = scaler.transform(g)
        win = np.lib.stride_tricks.sliding_window_view(feats, (lookback, n_feat))[:, 0]  # (n-L+1, L, F)
        sl = slice(lookback - 1, n)
        target = g["target_ret_1d"].astype(float).to_numpy()[sl] if "target_ret_1d" in g else np.full(n - lookback + 1, np.nan)
        tclose = g["target_close"].astype(float).to_numpy()[sl] if "target_close" in g else np.full_like(target, np.nan)
        parts.append({
            "x": np.ascontiguousarray(win, dtype=np.float32),
            "y": (target / scaler.target_scale).astype(np.float32),
            "ticker_idx": np.full(len(target), tickers.get(str(ticker), UNKNOWN_TICKER), dtype=np.int64),
            "tickers": np.full(len(target), str(ticker), dtype=object),
            "dates": g["date"].to_numpy()[sl],
            "close": g["close"].astype(float).to_numpy()[sl],
            "target_ret": target,
            "target_close": tclose,
        })
    if not parts:
        empty = np.zeros((0,))
        return Windows(np.zeros((0, lookback, n_feat), np.float32), empty.astype(np.float32), empty.astype(np.int64),
                       empty.astype(object), empty.astype(object), empty, empty, empty)
    return Windows(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def split_dates(dates: np.ndarray, train_end: dt.date | None, val_end: dt.date | None,
                val_fraction: float) -> tuple[dt.date, dt.date | None]:
    """Resolve (train_end, val_end): when train_end is None, the last ``val_fraction`` of the days
    before val_end become validation."""
    if train_end is not None:
        return _as_date(train_end), (_as_date(val_end) if val_end is not None else None)
    uniq = np.array(sorted(set(pd.to_datetime(pd.Series(dates)).dt.date)))
    if val_end is not None:
        uniq = uniq[uniq < _as_date(val_end)]
    if len(uniq) < 3:
        raise ValueError("too few days to split into training and validation")
    cut = uniq[max(1, int(len(uniq) * (1 - val_fraction)))]
    return cut, (_as_date(val_end) if val_end is not None else None)


def window_vol(x: np.ndarray, scaler: Scaler) -> np.ndarray | None:
    """Each window's realised volatility on its as-of day (``vol_20``, unscaled); None without it."""
    if "vol_20" not in scaler.columns:
        return None
    i = scaler.columns.index("vol_20")
    return x[:, -1, i].astype(float) * scaler.std[i] + scaler.mean[i] if len(x) else np.zeros(0)


def concat_windows(parts: list[Windows]) -> Windows:
    return Windows(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Windows)})
