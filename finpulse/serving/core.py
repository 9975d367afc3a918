"""The pure core of serving: errors, canary routing, model slots, the feature store and the signal math.

Nothing here imports Ray: the Serve deployments in ``deployments.py`` are thin shells over these
classes, and the unit tests drive them directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finpulse.data.schemas import PRICE_FEATURES, SENTIMENT_FEATURES

log = logging.getLogger(__name__)

STABLE, CANARY = "stable", "canary"


# ---- errors: each carries its HTTP status, so every layer can pass it on unchanged ------------------


class ServingError(Exception):
    status = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict:
        return {"error": {"status": self.status, "detail": self.detail}}


class ModelNotReady(ServingError):
    status = 503


class UnknownTicker(ServingError):
    status = 404


class NoFeatures(ServingError):
    status = 404


class BadInput(ServingError):
    status = 422


class TooLarge(ServingError):
    status = 413


_ERRORS = {cls.status: cls for cls in (ModelNotReady, UnknownTicker, BadInput, TooLarge)}


def error_from_dict(obj: dict) -> ServingError:
    """Rebuild the error a model replica returned in place of one item's result."""
    err = obj["error"]
    cls = _ERRORS.get(int(err["status"]), ServingError)
    out = cls(str(err["detail"]))
    out.status = int(err["status"])
    return out


def unwrap(obj: Any) -> Any:
    """An item result, or raise the error it stands for."""
    if isinstance(obj, dict) and "error" in obj:
        raise error_from_dict(obj)
    return obj


# ---- canary routing --------------------------------------------------------------------------------


def key_fraction(key: str) -> float:
    """A stable position in [0, 1) for a request key: the same key always lands on the same side."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def pick_slot(canary_weight: float, key: str | None = None, rng: random.Random | None = None) -> str:
    """``canary`` for a share ``canary_weight`` of requests: sticky by key, random without one."""
    if canary_weight <= 0.0:
        return STABLE
    if canary_weight >= 1.0:
        return CANARY
    u = key_fraction(key) if key else (rng or random).random()
    return CANARY if u < canary_weight else STABLE


# ---- a model slot: load by spec, swap in place, report what it holds --------------------------------


def import_object(path: str) -> Callable[..., Any]:
    """``package.module:attr`` -> the object (loaders are configured by import path)."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"loader {path!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), attr)


@dataclass
class ModelSlot:
    """One loaded model, replaced atomically: a failed load keeps the previous model serving."""

    kind: str
    model: Any = None
    spec: str | None = None
    version: str | None = None
    loaded_at: float | None = None
    load_seconds: float | None = None
    error: str | None = None
    failed_spec: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def load(self, spec: str | None, loader: str, **kwargs: Any) -> bool:
        """Load ``spec`` unless it is already loaded; None empties the slot. True if the model changed."""
        with self._lock:
            if spec == self.spec and (self.model is not None or spec is None):
                return False
            if spec is None:
                self.model, self.spec, self.version, self.loaded_at, self.error = None, None, None, None, None
                self.failed_spec = None
                return True
            t0 = time.perf_counter()
            try:
                model = import_object(loader)(spec, **kwargs)
            except Exception as exc:
                self.error, self.failed_spec = f"{type(exc).__name__}: {exc}"[:500], spec
                log.warning("loading %s model %r failed: %s", self.kind, spec, self.error)
                return False
            self.model, self.spec, self.error, self.failed_spec = model, spec, None, None
            self.version = str(getattr(model, "version", None) or spec)
            self.loaded_at, self.load_seconds = time.time(), round(time.perf_counter() - t0, 3)
            return True

    def require(self) -> Any:
        model = self.model
        if model is None:
            why = f" ({self.error})" if self.error else (" (no model configured)" if self.spec is None else "")
            raise ModelNotReady(f"{self.kind} model not loaded{why}")
        return model

    def info(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "version": self.version, "ready": self.ready,
                "loaded_at": self.loaded_at, "load_seconds": self.load_seconds, "error": self.error,
                "failed_spec": self.failed_spec}


# ---- sentiment ---------------------------------------------------------------------------------------


def pre_truncate(texts: Sequence[str], max_tokens: int, chars_per_token: int = 32) -> list[str]:
    """Cut absurdly long texts before tokenising (the model truncates to ``max_tokens`` anyway)."""
    limit = max(int(max_tokens), 1) * chars_per_token
    return [t if len(t) <= limit else t[:limit] for t in texts]


def score_requests(model: Any, requests: Sequence[Sequence[str]]) -> list[list[dict]]:
    """One model pass over all texts of many requests, split back per request."""
    flat = [t for texts in requests for t in texts]
    preds = model.predict(pre_truncate(flat, getattr(model, "max_length", 512))) if flat else []
    out, i = [], 0
    for texts in requests:
        out.append(preds[i : i + len(texts)])
        i += len(texts)
    return out


def day_aggregate(scores: Sequence[dict], likes: Sequence[int] | None = None,
                  reposts: Sequence[int] | None = None) -> dict:
    """The day's sentiment features from per-text scores, computed by the ETL's own
    :func:`finpulse.data.features.aggregate_daily_sentiment` (a second definition here was a
    training/serving skew: serving weighed every post the same while training weighed by engagement)."""
    from finpulse.data.features import AGGREGATE_COLUMNS, aggregate_daily_sentiment

    n = len(scores)
    if n == 0:
        return {"sent_mean": 0.0, "sent_count": 0, "sent_pos_share": 0.0, "sent_neg_share": 0.0, "sent_weighted": 0.0}
    posts = pd.DataFrame({"ticker": "_", "trading_day": dt.date(2000, 1, 3),
                          "score": [float(x["score"]) for x in scores], "label": [x["label"] for x in scores],
                          "likes": list(likes) if likes is not None else 0,
                          "reposts": list(reposts) if reposts is not None else 0})
    row = aggregate_daily_sentiment(posts).iloc[0]
    return {c: (int(row[c]) if c == "sent_count" else float(row[c])) for c in AGGREGATE_COLUMNS[2:]}


# ---- features ----------------------------------------------------------------------------------------


def _to_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else pd.Timestamp(value).date()


class FeatureStore:
    """Daily feature rows per ticker, indexed for fast as-of look-ups (one frame per ticker, by date)."""

    def __init__(self, frame: pd.DataFrame, source: str = "memory"):
        df = frame.copy()
        df["date"] = pd.to_datetime(df["date"]).dt.date
        df = df.sort_values(["ticker", "date"])
        self._by_ticker = {str(t): g.reset_index(drop=True) for t, g in df.groupby("ticker", sort=True)}
        self._dates = {t: np.array(g["date"].to_numpy(), dtype="datetime64[D]") for t, g in self._by_ticker.items()}
        self.source = source
        self.loaded_at = time.time()
        self.rows = len(df)

    @classmethod
    def from_uri(cls, uri: str) -> FeatureStore:
        """A parquet file/folder of DAILY_FEATURES rows, or an ETL output root (its ``daily_features``)."""
        from finpulse import storage

        if storage.exists(storage.join(uri, "LATEST")):
            from finpulse.data.catalog import load_dataset

            return cls(load_dataset(uri, "daily_features"), source=uri)
        return cls(storage.read_frame(uri), source=uri)

    @property
    def tickers(self) -> list[str]:
        return sorted(self._by_ticker)

    def last_date(self, ticker: str) -> dt.date:
        return self._by_ticker[ticker]["date"].iloc[-1]

    def end_row(self, ticker: str, as_of: dt.date | None = None, max_staleness_days: int = 7) -> int:
        """How many of ``ticker``'s rows are dated on or before ``as_of`` (all when None); 404-type
        errors for an unknown ticker or an ``as_of`` with no recent enough features."""
        frame = self._by_ticker.get(ticker)
        if frame is None:
            raise UnknownTicker(f"unknown ticker {ticker!r}; known: {', '.join(self.tickers) or 'none'}")
        if as_of is None:
            return len(frame)
        end = int(np.searchsorted(self._dates[ticker], np.datetime64(_to_date(as_of), "D"), side="right"))
        if end == 0:
            raise NoFeatures(f"no features for {ticker} on or before {as_of} (first day {frame['date'].iloc[0]})")
        last = frame["date"].iloc[end - 1]
        if (_to_date(as_of) - last).days > max_staleness_days:
            raise NoFeatures(f"no features for {ticker} within {max_staleness_days} days before {as_of} "
                             f"(latest {last})")
        return end

    def frame(self, ticker: str) -> pd.DataFrame:
        return self._by_ticker[ticker]

    def history(self, ticker: str, as_of: dt.date | None = None, rows: int = 120,
                max_staleness_days: int = 7) -> pd.DataFrame:
        """The last ``rows`` rows of ``ticker`` up to and including ``as_of`` (default: the latest day)."""
        end = self.end_row(ticker, as_of, max_staleness_days)
        return self._by_ticker[ticker].iloc[max(0, end - rows) : end]


def apply_signal(history: pd.DataFrame, aggregate: dict | None = None, closes: Sequence[float] | None = None,
                 source: str = "request") -> pd.DataFrame:
    """Replace the as-of day's sentiment features (and, given closes, the recent closes and all price
    features recomputed from them with the ETL's own ``price_features``)."""
    h = history.copy().reset_index(drop=True)
    if closes:
        from finpulse.data.features import price_features

        n = min(len(closes), len(h))
        h.loc[len(h) - n :, "close"] = np.asarray(closes[-n:], dtype=float)
        pf = price_features(h[["ticker", "date", "close", "volume"]])
        for col in PRICE_FEATURES:
            h[col] = pf[col].to_numpy()
    if aggregate is not None:
        last = h.index[-1]
        for col in SENTIMENT_FEATURES:
            h.loc[last, col] = aggregate[col]
        h.loc[last, "has_posts"] = aggregate["sent_count"] > 0
        if "sentiment_source" in h:
            h.loc[last, "sentiment_source"] = source
    return h


def finite(x: Any) -> float | None:
    """JSON has no NaN: a non-finite model output becomes null rather than a 500."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class ForecastService:
    """The Forecaster's logic: look up the history, apply request overrides, predict in one batch."""

    slot: ModelSlot = field(default_factory=lambda: ModelSlot("forecast"))
    store: FeatureStore | None = None
    store_error: str | None = None
    max_staleness_days: int = 7
    context_rows: int = 40  # rows beyond the lookback, so 20-day features can be recomputed from closes
    _prepared: dict = field(default_factory=dict, repr=False)  # ticker -> PreparedRows of the current pair
    _prepared_for: tuple | None = field(default=None, repr=False)  # the (model, store) they were prepared for

    def load_features(self, uri: str | None) -> None:
        """(Re)load the features; called on every reconfigure, so the same URI again means refresh."""
        if uri is None:
            return
        try:
            self.store = FeatureStore.from_uri(uri)
            self.store_error = None
        except Exception as exc:
            self.store_error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("loading features from %r failed: %s", uri, self.store_error)

    def _window(self, model: Any, item: dict, rows: int) -> Any:
        """The model input for one request. Plain look-ups slice the ticker's rows prepared once per
        (model, features) pair; requests that override the day's sentiment or closes rebuild theirs."""
        assert self.store is not None
        ticker = item["ticker"]
        end = self.store.end_row(ticker, item.get("as_of"), self.max_staleness_days)
        if item.get("sentiment") is not None or item.get("closes"):
            hist = self.store.frame(ticker).iloc[max(0, end - rows) : end]
            return model.window(apply_signal(hist, item.get("sentiment"), item.get("closes")))
        if self._prepared_for is None or self._prepared_for[0] is not model or self._prepared_for[1] is not self.store:
            # the pair itself, not id()s: a new model may reuse a freed one's id
            self._prepared, self._prepared_for = {}, (model, self.store)
        if ticker not in self._prepared:
            self._prepared[ticker] = model.prepare(self.store.frame(ticker))
        return model.window_at(self._prepared[ticker], end, start=max(0, end - rows))

    def predict(self, items: Sequence[dict]) -> list[dict]:
        """``items``: ``{"ticker", "as_of"?, "sentiment"?, "closes"?}``; one result or error dict each."""
        out: list[dict | None] = [None] * len(items)
        try:
            model = self.slot.require()
            if self.store is None:
                raise ModelNotReady(f"features not loaded ({self.store_error or 'no features_uri configured'})")
        except ServingError as exc:
            return [exc.to_dict()] * len(items)
        rows = int(model.lookback) + self.context_rows
        todo, windows = [], []
        for i, item in enumerate(items):
            try:
                windows.append(self._window(model, item, rows))
                todo.append(i)
            except ServingError as exc:
                out[i] = exc.to_dict()
            except ValueError as exc:  # fewer complete rows than the lookback
                out[i] = BadInput(f"not enough history to forecast: {exc}").to_dict()
        for i, p in zip(todo, model.predict_windows(windows), strict=True):
            out[i] = {**p, "model_version": self.slot.version}
        return out  # type: ignore[return-value]


@dataclass
class SentimentService:
    """The SentimentModel's logic: one model pass over many requests' texts."""

    slot: ModelSlot = field(default_factory=lambda: ModelSlot("sentiment"))

    def predict(self, requests: Sequence[Sequence[str]]) -> list[dict]:
        """One ``{"results", "version"}`` (or error dict) per request."""
        try:
            model = self.slot.require()
        except ServingError as exc:
            return [exc.to_dict()] * len(requests)
        version = self.slot.version
        return [{"results": r, "version": version} for r in score_requests(model, requests)]


def process_identity() -> dict:
    """Which process answered: replica restarts show up as a new pid / start time."""
    return {"pid": os.getpid(), "started_at": _STARTED_AT}


_STARTED_AT = time.time()
