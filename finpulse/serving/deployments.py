"""The Serve deployments: a thin shell over ``services``/``router``.

Graph: HTTP -> Gateway (FastAPI ingress, canary split, batches requests per hop)
-> SentimentModel | SentimentModelCanary | Forecaster | ForecasterCanary.

Every model slot is configured by its ``user_config`` (the model spec, loader, features URI, batch
sizes), applied by ``reconfigure``: changing a canary's version or weight reloads in place and
restarts no replica. Models load in a worker thread, and a failed load keeps the previous model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from finpulse.monitoring.metrics import ServingMetrics
from finpulse.serving.access import KeyRing
from finpulse.serving.api import RETRY_AFTER_S, create_api
from finpulse.serving.errors import ModelNotReady
from finpulse.serving.gauges import REFRESH_S, FreshnessGauges
from finpulse.serving.router import (
    Router,
    SlotRecorder,
    SlotScope,
    configure_forecast,
    configure_sentiment,
    forecast_info,
    sentiment_info,
)
from finpulse.serving.schemas import BatchConfig, ForecasterConfig, GatewayConfig, SentimentModelConfig
from finpulse.serving.services import ForecastService, SentimentService
from finpulse.serving.slots import CANARY, STABLE

log = logging.getLogger(__name__)

# Defaults sized for a 2-core laptop; serve_configs/*.yaml override them per environment.
SMALL = {"num_cpus": 0.25}
# Bounded queues at every hop: past max_ongoing_requests + max_queued_requests a caller (Serve's proxy
# for the Gateway, the Gateway for a model) gets an immediate 503 with Retry-After, never an endless wait.
SHED = {"max_queued_requests": 64, "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S}}


def _replica_slot(default: str = STABLE) -> str:
    """Which slot this replica serves, from its deployment's name (Forecaster vs ForecasterCanary)."""
    from finpulse.serving.app import DEPLOYMENT_NAMES

    try:
        name = serve.get_replica_context().deployment
    except Exception:  # outside a replica (direct construction in tests)
        return default
    return next((slot for (_, slot), dep in DEPLOYMENT_NAMES.items() if dep == name), default)


def _split(results: list, calls: list[list]) -> list[list]:
    out, i = [], 0
    for call in calls:
        out.append(results[i : i + len(call)])
        i += len(call)
    return out


def _apply_batching(batched: Any, cfg: BatchConfig) -> None:
    """A ``user_config``'s batch size and wait on a ``@serve.batch`` method: no replica restart."""
    batched.set_max_batch_size(cfg.max_batch_size)
    batched.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)


@serve.deployment(ray_actor_options=SMALL, max_ongoing_requests=32, **SHED)
class SentimentModel:
    """Scores texts. One call carries many requests (a Gateway batch); calls are batched again here."""

    def __init__(self) -> None:
        self.service = SentimentService()
        self.metrics = ServingMetrics()
        self.gauges = FreshnessGauges(self.metrics, "sentiment", _replica_slot(), drift=False)
        self._gauge_task: asyncio.Task | None = None

    async def reconfigure(self, config: dict) -> None:
        cfg = SentimentModelConfig(**(config or {}))
        await asyncio.to_thread(configure_sentiment, self.service, cfg)
        _apply_batching(self._batched, cfg)
        if self._gauge_task is None:
            self._gauge_task = asyncio.get_running_loop().create_task(self._follow_gauges())

    async def _follow_gauges(self) -> None:
        """The model-age gauge, kept current between requests."""
        while True:
            try:
                await asyncio.to_thread(self.gauges.refresh, self.service.slot)
            except Exception as exc:
                log.warning("model age gauge failed: %s", exc)
            await asyncio.sleep(REFRESH_S)

    async def score(self, requests: list[list[str]]) -> list[dict]:
        """Per request ``{"results": [...], "version"}`` or an error dict."""
        return await self._batched(requests)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batched(self, calls: list[list[list[str]]]) -> list[list[dict]]:
        flat = [texts for call in calls for texts in call]
        self.metrics.batch("sentiment_model_texts", sum(len(t) for t in flat))
        results = await asyncio.to_thread(self.service.predict, flat)
        version = self.service.slot.version or "none"
        self.metrics.sentiment_classes(version, (s["label"] for r in results if "results" in r for s in r["results"]))
        return _split(results, calls)

    async def info(self) -> dict:
        return sentiment_info(self.service)


@serve.deployment(ray_actor_options=SMALL, max_ongoing_requests=32, **SHED)
class Forecaster:
    """Forecasts from the latest daily features per ticker (reloaded on every reconfigure)."""

    def __init__(self) -> None:
        self.service = ForecastService()
        self.metrics = ServingMetrics()
        self.slot = _replica_slot()
        # the drift gauges come from the stable replicas only: one series per (signal, feature) per replica
        self.gauges = FreshnessGauges(self.metrics, "forecast", self.slot, drift=self.slot == STABLE)
        self.refresh_s = 0.5
        self._live: asyncio.Task | None = None

    async def reconfigure(self, config: dict) -> None:
        cfg = ForecasterConfig(**(config or {}))
        await asyncio.to_thread(configure_forecast, self.service, cfg)
        _apply_batching(self._batched, cfg)
        self.refresh_s = cfg.live_refresh_s
        if self._live is None:
            self._live = asyncio.get_running_loop().create_task(self._follow_live())

    async def _follow_live(self) -> None:
        """Take the stream's newest rows as they land and export each ticker's feature age; refresh the
        model-age and drift gauges (at most every ``gauges.REFRESH_S``, in a thread: registry/storage I/O).

        Runs on the replica's event loop between requests, so a request never sees a half-applied update."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                self.service.refresh_live()
                self._export_age()
            except Exception as exc:  # a torn read or a storage hiccup: keep serving, retry next tick
                log.warning("live features refresh failed: %s", exc)
            try:
                if self.gauges.due():
                    await asyncio.to_thread(self.gauges.refresh, self.service.slot)
            except Exception as exc:  # a missing registry or a torn drift file must not stop serving
                log.warning("freshness gauges refresh failed: %s", exc)

    def _export_age(self) -> None:
        import datetime as dt
        import time

        from finpulse.monitoring.freshness import trading_days_behind

        store = self.service.store
        if store is None:
            return
        now = time.time()
        for ticker in store.tickers:
            behind = trading_days_behind(store.last_date(ticker), dt.datetime.fromtimestamp(now, dt.UTC))
            self.metrics.feature_age(ticker, behind, now - store.updated_at[ticker])

    async def predict(self, items: list[dict]) -> list[dict]:
        """Per item a forecast dict (with ``model_version``) or an error dict."""
        return await self._batched(items)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batched(self, calls: list[list[dict]]) -> list[list[dict]]:
        flat = [item for call in calls for item in call]
        self.metrics.batch("forecast_model_items", len(flat))
        results = self.service.predict(flat)  # small LSTM: cheaper inline than a thread hop
        self.metrics.predicted_returns(self.service.slot.version or "none",
                                       (r["predicted_return"] for r in results if "predicted_return" in r),
                                       slot=self.slot)
        return _split(results, calls)

    async def info(self) -> dict:
        return forecast_info(self.service)


# A replica that died (killed, OOM, node lost) while holding the call: the same items are safe to send
# again (scoring and forecasting are pure reads), and Serve routes the retry to a live replica.
_REPLICA_LOST = {"RayActorError", "ActorDiedError", "ActorUnavailableError", "ReplicaUnavailableError",
                 "WorkerCrashedError"}


def _replica_lost(exc: BaseException) -> bool:
    return any(c.__name__ in _REPLICA_LOST for c in type(exc).__mro__)


def _unavailable(exc: Exception, what: str) -> dict:
    log.warning("%s hop failed: %s", what, exc)
    return ModelNotReady(f"{what} model unavailable: {type(exc).__name__}").to_dict()


@serve.deployment(ray_actor_options=SMALL, max_ongoing_requests=64, **SHED)
@serve.ingress()
class Gateway(Router):
    """The FastAPI ingress: splits traffic between stable and canary, batches requests per hop."""

    def __init__(self, sentiment: Any, sentiment_canary: Any, forecaster: Any, forecaster_canary: Any) -> None:
        Router.__init__(self)
        self.handles = {("sentiment", STABLE): sentiment, ("sentiment", CANARY): sentiment_canary,
                        ("forecast", STABLE): forecaster, ("forecast", CANARY): forecaster_canary}
        self.metrics = ServingMetrics()

    def __serve_build_asgi_app__(self) -> Any:
        # request metrics carry the slot that answered; the keys come from this replica's environment
        app = create_api(self, SlotRecorder(self.metrics), keys=KeyRing.from_env())
        app.add_middleware(SlotScope)
        return app

    def reconfigure(self, config: dict) -> None:
        Router.reconfigure(self, GatewayConfig(**(config or {})))
        for hop in (self._sentiment_stable, self._sentiment_canary, self._forecast_stable, self._forecast_canary):
            _apply_batching(hop, self.config)

    async def _call_sentiment(self, slot: str, texts: list[str]) -> dict:
        return await (self._sentiment_stable if slot == STABLE else self._sentiment_canary)(texts)

    async def _call_forecast(self, slot: str, item: dict) -> dict:
        return await (self._forecast_stable if slot == STABLE else self._forecast_canary)(item)

    async def _hop(self, model: str, method: str, slot: str, items: list[Any]) -> list[dict]:
        """One handle call for a batch of concurrent requests to one slot. Each slot batches apart, so
        a slow or failing canary never holds up the stable requests (nor skews their latency)."""
        self.metrics.batch(f"gateway_{model}", len(items))
        call = getattr(self.handles[(model, slot)], method)
        for attempt, pause in enumerate((*self.config.replica_retry_pauses_s, None)):
            try:
                return await call.remote(items)
            except Exception as exc:
                if pause is None or not _replica_lost(exc):
                    return [_unavailable(exc, f"{model} {slot}")] * len(items)
                log.warning("%s %s replica lost (%s): retry %d", model, slot, type(exc).__name__, attempt + 1)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=4)
    async def _sentiment_stable(self, items: list[list[str]]) -> list[dict]:
        return await self._hop("sentiment", "score", STABLE, items)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=4)
    async def _sentiment_canary(self, items: list[list[str]]) -> list[dict]:
        return await self._hop("sentiment", "score", CANARY, items)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=4)
    async def _forecast_stable(self, items: list[dict]) -> list[dict]:
        return await self._hop("forecast", "predict", STABLE, items)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=4)
    async def _forecast_canary(self, items: list[dict]) -> list[dict]:
        return await self._hop("forecast", "predict", CANARY, items)

    async def _info(self, model: str, slot: str) -> dict:
        return await asyncio.wait_for(self.handles[(model, slot)].info.remote(), timeout=10)
