"""Canary routing shared by the Serve Gateway and the in-process backend.

A request goes to the canary slot of a model with probability ``weights[model]`` (sticky per
``X-Request-Key``); the answer names the version that served it. The router also composes the
models: ``signal`` scores a day's texts, aggregates them with the ETL's own aggregation and
forecasts with that aggregate, so the HTTP route only validates and shapes the answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from finpulse.serving.errors import ModelNotReady, unwrap
from finpulse.serving.feature_store import day_aggregate
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, SentimentModelConfig, SignalRequest
from finpulse.serving.services import ForecastService, SentimentService, process_identity
from finpulse.serving.slots import CANARY, STABLE, pick_slot

MODELS = ("sentiment", "forecast")
SLOTS = (STABLE, CANARY)
# Which model's slot a route's request metric is labelled with (/v1/signal: the forecaster's).
ROUTE_MODEL = {"/v1/sentiment": "sentiment", "/v1/forecast": "forecast", "/v1/signal": "forecast"}
NO_SLOT = "none"

# The slots picked while handling the current request, per model. A mutable dict set by SlotScope at the
# start of each request, so the request metric recorded after the response sees what the handler picked.
_PICKS: ContextVar[dict[str, str] | None] = ContextVar("finpulse_slot_picks", default=None)


class SlotScope:
    """ASGI middleware (outermost): a fresh record of slot picks for each request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        token = _PICKS.set({})
        try:
            await self.app(scope, receive, send)
        finally:
            _PICKS.reset(token)


def request_slot(route: str) -> str:
    """The slot that served the current request's model (``none`` when no model was picked)."""
    picks = _PICKS.get()
    model = ROUTE_MODEL.get(route)
    return (picks or {}).get(model, NO_SLOT) if model else NO_SLOT


class SlotRecorder:
    """Adapts ServingMetrics to the API's ``request(route, version, status, seconds)``, adding the slot."""

    def __init__(self, metrics: Any):
        self.metrics = metrics

    def request(self, route: str, version: str, status: int, seconds: float) -> None:
        self.metrics.request(route, version, status, seconds, slot=request_slot(route))


@dataclass(frozen=True)
class SignalResult:
    """One /v1/signal answer before the route shapes it: the texts' scores, the day's sentiment
    aggregate built from them, and the forecast made with that aggregate."""

    scores: list[dict]
    aggregate: dict
    forecast: dict
    sentiment_version: str
    forecast_version: str


class Router:
    """Splits traffic by the weights in ``config``; subclasses say how a slot is called."""

    def __init__(self, config: GatewayConfig | None = None, seed: int | None = None):
        self.config = config or GatewayConfig()
        self._rng = random.Random(seed)  # noqa: S311 - canary traffic split, seedable for tests; not a secret
        self._health: tuple[float, bool, dict] | None = None  # (checked at, ok, detail)
        self._health_task: asyncio.Task | None = None
        self._feed: tuple[str, Any] | None = None  # (url, Feed), connected on the first POST /v1/posts

    def reconfigure(self, config: dict | GatewayConfig) -> None:
        self.config = config if isinstance(config, GatewayConfig) else GatewayConfig(**(config or {}))
        self._health = None  # a reconfigure may change what "ready" means: ask the models again

    async def _call_sentiment(self, slot: str, texts: list[str]) -> dict:
        raise NotImplementedError

    async def _call_forecast(self, slot: str, item: dict) -> dict:
        raise NotImplementedError

    async def _info(self, model: str, slot: str) -> dict:
        raise NotImplementedError

    def pick(self, model: str, key: str | None) -> str:
        slot = pick_slot(self.config.weight(model), key, self._rng)
        picks = _PICKS.get()
        if picks is not None:
            picks[model] = slot
        return slot

    async def sentiment(self, texts: list[str], key: str | None) -> tuple[list[dict], str]:
        out = unwrap(await self._call_sentiment(self.pick("sentiment", key), texts))
        return out["results"], out["version"]

    async def forecast(self, item: dict, key: str | None) -> tuple[dict, str]:
        out = unwrap(await self._call_forecast(self.pick("forecast", key), item))
        return out, out["model_version"]

    async def signal(self, request: SignalRequest, key: str | None) -> SignalResult:
        """Score the day's texts, rebuild the day's sentiment aggregate (engagement-weighted as in the
        ETL) and forecast with it; both hops use the same request key, so canary stickiness holds."""
        scores, s_version = await self.sentiment(request.texts, key)
        agg = day_aggregate(scores, request.likes, request.reposts)
        item = {"ticker": request.ticker, "as_of": request.as_of, "sentiment": agg, "closes": request.closes}
        forecast, f_version = await self.forecast(item, key)
        return SignalResult(scores, agg, forecast, s_version, f_version)

    async def publish_posts(self, posts: list[dict]) -> dict:
        """Validate and publish posts to the live feed (``POST /v1/posts``)."""
        from finpulse.ingest.intake import publish_posts

        if not self.config.nats_url:
            raise ModelNotReady("live ingestion is not configured here (the Gateway has no nats_url)")
        if self._feed is None or self._feed[0] != self.config.nats_url:
            from finpulse.ingest.broker import Feed

            try:
                feed = await Feed.connect(self.config.nats_url, name="finpulse-gateway", connect_timeout_s=2.0)
            except Exception as exc:  # no broker there now: the client should retry later, not see a 500
                raise ModelNotReady(f"live feed broker unreachable at {self.config.nats_url}: "
                                    f"{type(exc).__name__}") from exc
            self._feed = (self.config.nats_url, feed)
        return await publish_posts(self._feed[1], posts)

    async def models(self) -> dict:
        models: dict[str, Any] = {}
        for model in MODELS:
            models[model] = {"weights": {STABLE: 1.0 - self.config.weight(model), CANARY: self.config.weight(model)}}
            for slot in SLOTS:
                try:
                    models[model][slot] = await self._info(model, slot)
                except Exception as exc:
                    models[model][slot] = {"ready": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"gateway": process_identity(), "models": models}

    async def check_health(self) -> tuple[bool, dict]:
        """Ask every stable slot for its state (four handle calls in Serve): what /healthz caches."""
        info = await self.models()
        problems = {f"{m}.{STABLE}": info["models"][m][STABLE].get("error") or "not loaded"
                    for m in MODELS if not info["models"][m][STABLE].get("ready")}
        fc = info["models"]["forecast"][STABLE]
        if fc.get("ready") and not fc.get("features", {}).get("ready", True):
            problems["forecast.features"] = fc["features"].get("error") or "not loaded"
        return not problems, {"problems": problems}

    async def _refresh_health(self) -> tuple[bool, dict]:
        try:
            ok, detail = await self.check_health()
        except Exception as exc:  # a check that fails is a "not ready", not a 500
            ok, detail = False, {"problems": {"gateway": f"{type(exc).__name__}: {exc}"[:300]}}
        self._health = (time.monotonic(), ok, detail)
        return ok, detail

    def _start_refresh(self) -> asyncio.Task:
        """One check in flight at a time, however many probes arrive meanwhile."""
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.ensure_future(self._refresh_health())
        return self._health_task

    async def health(self) -> tuple[bool, dict]:
        """Readiness kept in the Gateway: a ready state is served from memory and re-checked in the
        background once it is ``health_ttl_s`` old; a not-ready state is re-checked on the probe
        (shared by concurrent probes), so the first probe after the models load answers 200."""
        cached = self._health
        if cached is not None and cached[1]:
            if time.monotonic() - cached[0] >= self.config.health_ttl_s:
                self._start_refresh()
            return cached[1], {**cached[2], "checked_s_ago": round(time.monotonic() - cached[0], 3)}
        ok, detail = await asyncio.shield(self._start_refresh())
        return ok, {**detail, "checked_s_ago": 0.0}


def sentiment_info(service: SentimentService) -> dict:
    return {**service.slot.info(), **process_identity()}


def forecast_info(service: ForecastService) -> dict:
    store = service.store
    features = {"ready": store is not None, "source": getattr(store, "source", None),
                "rows": getattr(store, "rows", 0), "loaded_at": getattr(store, "loaded_at", None),
                "tickers": store.tickers if store else [], "error": service.store_error,
                "live_uri": service.live_uri,
                "updated_at": dict(store.updated_at) if store else {}}
    return {**service.slot.info(), "features": features, **process_identity()}


def configure_sentiment(service: SentimentService, cfg: SentimentModelConfig) -> None:
    service.slot.load(cfg.model, cfg.loader, device=cfg.device, **cfg.loader_kwargs)


def configure_forecast(service: ForecastService, cfg: ForecasterConfig) -> None:
    service.max_staleness_days = cfg.max_staleness_days
    service.live_uri = cfg.live_features_uri
    service.slot.load(cfg.model, cfg.loader)
    service.load_features(cfg.features_uri)
    service.refresh_live()


class LocalBackend(Router):
    """Every slot in this process: the API without Serve (unit tests, notebooks)."""

    def __init__(self, sentiment: dict[str, SentimentModelConfig], forecast: dict[str, ForecasterConfig],
                 config: GatewayConfig | None = None, seed: int | None = None):
        super().__init__(config, seed)
        self.sentiment_services = {s: SentimentService() for s in SLOTS}
        self.forecast_services = {s: ForecastService() for s in SLOTS}
        for slot, cfg in sentiment.items():
            configure_sentiment(self.sentiment_services[slot], cfg)
        for slot, cfg in forecast.items():
            configure_forecast(self.forecast_services[slot], cfg)

    async def _call_sentiment(self, slot: str, texts: list[str]) -> dict:
        return self.sentiment_services[slot].predict([texts])[0]

    async def _call_forecast(self, slot: str, item: dict) -> dict:
        return self.forecast_services[slot].predict([item])[0]

    async def _info(self, model: str, slot: str) -> dict:
        if model == "sentiment":
            return sentiment_info(self.sentiment_services[slot])
        return forecast_info(self.forecast_services[slot])
