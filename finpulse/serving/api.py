"""The FastAPI application of the Gateway, built over a *backend* so it runs with or without Serve.

The backend (the Gateway deployment in production, the in-process ``LocalBackend`` in unit tests;
both are a :class:`~finpulse.serving.router.Router`) offers ``sentiment(texts, key)``,
``forecast(item, key)``, ``signal(request, key)``, ``models()``, ``health()`` and a ``config``
(:class:`GatewayConfig`). Routes validate and shape; the backend does the work. The API turns every failure into a clear status: 422 for malformed input,
413 for too much of it, 404 for an unknown ticker, 503 while a model is not loaded.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from finpulse.serving.access import AccessControl, KeyRing, document_security
from finpulse.serving.errors import ServingError, TooLarge
from finpulse.serving.router import SignalResult
from finpulse.serving.schemas import (
    ErrorResponse,
    ForecastRequest,
    ForecastResponse,
    GatewayConfig,
    PostsRequest,
    PostsResponse,
    SentimentRequest,
    SentimentResponse,
    SignalRequest,
    SignalResponse,
)

log = logging.getLogger(__name__)

API_VERSION = "v1"
ROUTES = ("/v1/sentiment", "/v1/forecast", "/v1/signal", "/v1/models", "/healthz")
VERSION_HEADER = "X-Model-Version"
VERSION_HEADER_BYTES = VERSION_HEADER.lower().encode()
KEY_HEADER = "X-Request-Key"


class Backend(Protocol):
    config: GatewayConfig

    async def sentiment(self, texts: list[str], key: str | None) -> tuple[list[dict], str]: ...

    async def forecast(self, item: dict, key: str | None) -> tuple[dict, str]: ...

    async def signal(self, request: SignalRequest, key: str | None) -> SignalResult: ...

    async def publish_posts(self, posts: list[dict]) -> dict: ...

    async def models(self) -> dict: ...

    async def health(self) -> tuple[bool, dict]: ...


class Metrics(Protocol):
    def request(self, route: str, version: str, status: int, seconds: float) -> None: ...


class NullMetrics:
    def request(self, route: str, version: str, status: int, seconds: float) -> None:
        pass


# Seconds a client should wait before retrying a 503 (overload or a model not there yet): Serve's own
# backpressure rejections carry the same header (``backpressure_config.retry_after_s`` in serve_configs).
RETRY_AFTER_S = 1


def _json(content: Any, status: int = 200, version: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(content, separators=(",", ":"), allow_nan=False, default=str).encode()
    headers = {**({VERSION_HEADER: version} if version else {}), **(headers or {})}
    return Response(body, status_code=status, media_type="application/json", headers=headers or None)


def _error(status: int, detail: Any) -> Response:
    """``{"detail": ...}`` with its status; a 503 says when to come back (``Retry-After``)."""
    return _json({"detail": detail}, status, headers={"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)


# Ray errors that mean "the model is not there right now", not "the request is bad": 503.
_UNAVAILABLE_NAMES = {"DeploymentUnavailableError", "BackPressureError", "RayActorError", "ActorDiedError",
                      "ActorUnavailableError", "RequestCancelledError", "GetTimeoutError", "TimeoutError",
                      "ReplicaUnavailableError"}


def _is_unavailable(exc: BaseException) -> bool:
    return any(c.__name__ in _UNAVAILABLE_NAMES for c in type(exc).__mro__)


class RequestMetrics:
    """ASGI middleware: one request metric (route, model version, status, latency) per HTTP request.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware spawns a task
    group and memory streams per request, a cost the profile showed on the Gateway's hot path.
    """

    def __init__(self, app: Any, record: Any, on_error: Any):
        self.app, self.record, self.on_error = app, record, on_error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        status, version, started = 500, "none", False

        async def observing_send(msg: dict) -> None:
            nonlocal status, version, started
            if msg["type"] == "http.response.start":
                started, status = True, int(msg["status"])
                version = next((v.decode("latin-1") for k, v in msg.get("headers", [])
                                if k.lower() == VERSION_HEADER_BYTES), "none")
            await send(msg)

        try:
            await self.app(scope, receive, observing_send)
        except Exception as exc:
            if started:
                raise
            await (await self.on_error(None, exc))(scope, receive, observing_send)
        finally:
            self.record(path if path in ROUTES else "other", version, status, time.perf_counter() - t0)


class BodyLimit:
    """ASGI middleware: 413 for a body above the configured limit, declared or streamed."""

    class _TooBig(Exception):
        pass

    def __init__(self, app: Any, limit: Any):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(self.limit())
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await _error(400, "invalid Content-Length")(scope, receive, send)
                    return
                if size > limit:
                    await _error(413, f"request body of {size} bytes exceeds {limit}")(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyLimit._TooBig
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyLimit._TooBig:
            if not started:
                await _error(413, f"request body exceeds {limit} bytes")(scope, receive, send)


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    """Field errors without the offending input (it may be NaN or huge, which JSON cannot echo)."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()]


def finite(x: Any) -> float | None:
    """JSON has no NaN: a non-finite model output becomes null rather than a 500."""
    x = float(x)
    return x if math.isfinite(x) else None


def _forecast_body(f: dict, version: str) -> dict:
    return {
        "ticker": f["ticker"],
        "as_of": str(f["as_of"])[:10],
        "predicted_close": finite(f["predicted_close"]),
        "predicted_return": finite(f["predicted_return"]),
        "interval": {"low": finite(f["low"]), "high": finite(f["high"]), "level": finite(f["level"])},
        "model_version": version,
        "features_updated_at": f["features_updated_at"],
        "stale": f["stale"],
        "provisional": f["provisional"],
    }


def _signal_body(ticker: str, r: SignalResult) -> dict:
    return {"ticker": ticker, "sentiment": r.aggregate, "scores": r.scores,
            "forecast": _forecast_body(r.forecast, r.forecast_version),
            "sentiment_model_version": r.sentiment_version, "model_version": r.forecast_version}


async def _on_any(_: Request, exc: Exception) -> Response:
    if _is_unavailable(exc):
        return _error(503, f"model temporarily unavailable: {type(exc).__name__}")
    log.exception("unhandled error")
    return _error(500, f"internal error: {type(exc).__name__}")


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure becomes ``{"detail": ...}`` with its status; Ray's "not there now" errors are 503."""

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> Response:
        return _error(422, _validation_errors(exc))

    @app.exception_handler(ServingError)
    async def _on_serving(_: Request, exc: ServingError) -> Response:
        return _error(exc.status, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, exc.detail)

    app.add_exception_handler(Exception, _on_any)


ERRORS = {413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}
ERRORS_404 = {404: {"model": ErrorResponse}, **ERRORS}


def _add_model_routes(app: FastAPI, backend: Backend) -> None:
    """The three model routes: validate, call the backend, shape the answer."""

    def _check_texts(texts: list[str]) -> None:
        if len(texts) > backend.config.max_texts:
            raise TooLarge(f"{len(texts)} texts exceed the limit of {backend.config.max_texts} per request")

    @app.post(f"/{API_VERSION}/sentiment", response_model=SentimentResponse, responses=ERRORS)
    async def sentiment(body: SentimentRequest, request: Request) -> Response:
        """Score texts: label, class probabilities and score = p(positive) - p(negative) per text."""
        _check_texts(body.texts)
        results, version = await backend.sentiment(body.texts, request.headers.get(KEY_HEADER))
        return _json({"results": results, "model_version": version}, version=version)

    @app.post(f"/{API_VERSION}/forecast", response_model=ForecastResponse, responses=ERRORS_404)
    async def forecast(body: ForecastRequest, request: Request) -> Response:
        """Next-day close and return with a prediction interval, from the as-of day's features."""
        f, version = await backend.forecast({"ticker": body.ticker, "as_of": body.as_of},
                                            request.headers.get(KEY_HEADER))
        return _json(_forecast_body(f, version), version=version)

    @app.post(f"/{API_VERSION}/signal", response_model=SignalResponse, responses=ERRORS_404)
    async def signal(body: SignalRequest, request: Request) -> Response:
        """Score the day's texts, rebuild the day's sentiment aggregate and forecast with it."""
        _check_texts(body.texts)
        r = await backend.signal(body, request.headers.get(KEY_HEADER))
        return _json(_signal_body(body.ticker, r),
                     version=f"forecast={r.forecast_version};sentiment={r.sentiment_version}")


def _add_ingest_routes(app: FastAPI, backend: Backend) -> None:
    @app.post(f"/{API_VERSION}/posts", status_code=202, response_model=PostsResponse, responses=ERRORS)
    async def posts(body: PostsRequest) -> Response:
        """Publish up to 1,000 posts to the live feed; counts of accepted, duplicate and rejected (with reasons)."""
        return _json(await backend.publish_posts(body.posts), 202)


def _add_info_routes(app: FastAPI, backend: Backend) -> None:
    @app.get(f"/{API_VERSION}/models")
    async def models() -> Response:
        """Stable and canary versions of each model, traffic weights, load times and replica identity."""
        return _json(await backend.models())

    @app.get("/healthz")
    async def healthz() -> Response:
        """200 when the stable models and the features are loaded, else 503 with what is missing."""
        ok, detail = await backend.health()
        return _json({"status": "ok" if ok else "unavailable", **detail}, 200 if ok else 503,
                     headers=None if ok else {"Retry-After": str(RETRY_AFTER_S)})


def create_api(backend: Backend, metrics: Metrics | None = None, title: str = "FinPulse", *,
               keys: KeyRing) -> FastAPI:
    """The HTTP API over ``backend`` (OpenAPI at /docs), open only to ``keys`` (``access.py``)."""
    metrics = metrics or NullMetrics()
    app = FastAPI(title=title, version="1.0", description="Sentiment and next-day forecasts from social posts.")
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=lambda: backend.config.max_body_bytes)
    app.add_middleware(AccessControl, keys=keys, limits=lambda: backend.config.rate_limit, error=_error)
    app.add_middleware(RequestMetrics, record=metrics.request, on_error=_on_any)  # outermost: 413s, 401s counted
    _add_model_routes(app, backend)
    _add_ingest_routes(app, backend)
    _add_info_routes(app, backend)
    document_security(app)
    return app
