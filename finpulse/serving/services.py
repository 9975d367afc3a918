"""What the model replicas do, without Ray: score many requests' texts in one pass, forecast many
items in one batch. The Serve deployments in ``deployments.py`` are thin shells over these classes,
and the unit tests drive them directly."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finpulse.serving.errors import BadInput, ModelNotReady, ServingError
from finpulse.serving.feature_store import FeatureStore, apply_signal
from finpulse.serving.slots import ModelSlot

log = logging.getLogger(__name__)


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


@dataclass
class ForecastService:
    """The Forecaster's logic: look up the history, apply request overrides, predict in one batch."""

    slot: ModelSlot = field(default_factory=lambda: ModelSlot("forecast"))
    store: FeatureStore | None = None
    store_error: str | None = None
    max_staleness_days: int = 7
    context_rows: int = 40  # rows beyond the lookback, so 20-day features can be recomputed from closes
    live_uri: str | None = None  # the stream processor's features folder (state.json + <TICKER>.parquet)
    _prepared: dict = field(default_factory=dict, repr=False)  # ticker -> (rows version, PreparedRows)
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

    def refresh_live(self) -> list[str]:
        """Take the stream's newer rows (no restart, no config edit); returns the tickers refreshed."""
        if self.live_uri is None or self.store is None:
            return []
        from finpulse import storage

        state_uri = storage.join(self.live_uri, "state.json")
        state = storage.read_json(state_uri) if storage.exists(state_uri) else {}
        fresh = [t for t, s in state.items() if float(s["updated_at"]) > self.store.updated_at.get(t, 0.0)]
        for ticker in fresh:
            rows = storage.read_frame(storage.join(self.live_uri, f"{ticker}.parquet"))
            self.store.apply_live(ticker, rows, float(state[ticker]["updated_at"]))
        return fresh

    def freshness(self, ticker: str, end: int, now: float | None = None) -> dict:
        """What an answer says about its features: the row's day, when the rows changed, stale, provisional."""
        from finpulse.monitoring.freshness import is_stale

        assert self.store is not None  # noqa: S101 - type narrowing: predict() checked the store first
        row = self.store.frame(ticker).iloc[end - 1]
        now_dt = dt.datetime.fromtimestamp(now or time.time(), dt.UTC)
        return {"features_updated_at": dt.datetime.fromtimestamp(self.store.updated_at[ticker], dt.UTC).isoformat(),
                "stale": is_stale(row["date"], now_dt), "provisional": bool(row.get("provisional", False))}

    def _window(self, model: Any, item: dict, end: int, rows: int) -> Any:
        """The model input for one request. Plain look-ups slice the ticker's rows prepared once per
        (model, features, rows version); requests that override the day's sentiment or closes rebuild theirs."""
        assert self.store is not None  # noqa: S101 - type narrowing: predict() checked the store first
        ticker = item["ticker"]
        if item.get("sentiment") is not None or item.get("closes"):
            hist = self.store.frame(ticker).iloc[max(0, end - rows) : end]
            return model.window(apply_signal(hist, item.get("sentiment"), item.get("closes")))
        if self._prepared_for is None or self._prepared_for[0] is not model or self._prepared_for[1] is not self.store:
            # the pair itself, not id()s: a new model may reuse a freed one's id
            self._prepared, self._prepared_for = {}, (model, self.store)
        version = self.store.versions.get(ticker, 0)
        if self._prepared.get(ticker, (None,))[0] != version:
            self._prepared[ticker] = (version, model.prepare(self.store.frame(ticker)))
        return model.window_at(self._prepared[ticker][1], end, start=max(0, end - rows))

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
        todo, windows, fresh = [], [], []
        for i, item in enumerate(items):
            try:
                end = self.store.end_row(item["ticker"], item.get("as_of"), self.max_staleness_days)
                windows.append(self._window(model, item, end, rows))
                fresh.append(self.freshness(item["ticker"], end))
                todo.append(i)
            except ServingError as exc:
                out[i] = exc.to_dict()
            except ValueError as exc:  # fewer complete rows than the lookback
                out[i] = BadInput(f"not enough history to forecast: {exc}").to_dict()
        for i, p, f in zip(todo, model.predict_windows(windows) if windows else [], fresh, strict=True):
            out[i] = {**p, **f, "model_version": self.slot.version}
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
