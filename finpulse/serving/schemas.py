"""Request/response models of the HTTP API and the typed user_configs of the Serve deployments.

Requests reject NaN/Infinity (``allow_inf_nan=False``) and wrong types with 422; the text-count
limit is checked by the route (413), because it is a size limit, not a malformed field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from finpulse.data.schemas import SENTIMENT_LABELS

Ticker = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9.\-^]{1,12}$")]
Close = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Label = Literal["negative", "neutral", "positive"]
assert tuple(Label.__args__) == SENTIMENT_LABELS  # noqa: S101 - one label vocabulary across the project, checked at import


class _Request(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", str_max_length=100_000)


class SentimentRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["Shares soared after a record quarter"]}]})

    texts: list[str] = Field(..., min_length=1, description="Texts to score (at most the server's max_texts).")


class ForecastRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ticker": "AAPL"}]})

    ticker: Ticker
    as_of: dt.date | None = Field(None, description="Forecast from the features of this day (default: latest).")


class SignalRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ticker": "TSLA", "texts": ["Deliveries beat estimates"]}]})

    ticker: Ticker
    texts: list[str] = Field(..., min_length=1, description="The as-of day's posts about the ticker.")
    closes: list[Close] | None = Field(None, min_length=1, max_length=4096,
                                       description="Recent closes, oldest first, ending with the as-of day's close.")
    as_of: dt.date | None = None
    likes: list[Count] | None = Field(None, description="Likes per text (same order): weights sent_weighted "
                                                      "exactly as the ETL does; default 0 each.")
    reposts: list[Count] | None = Field(None, description="Reposts per text (same order); default 0 each.")

    @model_validator(mode="after")
    def _one_engagement_per_text(self) -> SignalRequest:
        for name in ("likes", "reposts"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.texts):
                raise ValueError(f"{name} has {len(values)} values for {len(self.texts)} texts")
        return self


MAX_POSTS_PER_CALL = 1000


class PostsRequest(_Request):
    """Posts in the canonical post layout (post_id, ticker, created_at, text, author, likes, reposts, source).

    Rows are checked one by one with the ETL's own validation, so a bad row is rejected with its reason
    while the rest of the call goes through; only a malformed call as a whole is a 422."""

    posts: list[dict[str, str | int | float | None]] = Field(..., min_length=1, max_length=MAX_POSTS_PER_CALL)


class PostRejection(BaseModel):
    index: int
    post_id: str | None
    reason: str


class PostsResponse(BaseModel):
    accepted: int = Field(description="Published to the live feed.")
    duplicate: int = Field(description="Already on the feed (same ticker and post_id): not published again.")
    rejected: int = Field(description="Refused; each is kept on the dead-letter stream with its reason.")
    rejections: list[PostRejection]


class SentimentScore(BaseModel):
    label: Label
    probabilities: dict[str, float]
    score: float


class SentimentResponse(BaseModel):
    results: list[SentimentScore]
    model_version: str


class Interval(BaseModel):
    low: float
    high: float
    level: float


class ForecastResponse(BaseModel):
    ticker: str
    as_of: dt.date = Field(description="The last feature day the forecast uses; it forecasts the next trading day.")
    predicted_close: float
    predicted_return: float
    interval: Interval
    model_version: str
    features_updated_at: dt.datetime = Field(description="When the ticker's feature rows last changed (UTC).")
    stale: bool = Field(description="Features more than one trading day behind the newest closed session.")
    provisional: bool = Field(description="as_of is today's open session: the latest quote stands in for its close.")


class DaySentiment(BaseModel):
    sent_mean: float
    sent_count: int
    sent_pos_share: float
    sent_neg_share: float
    sent_weighted: float


class SignalResponse(BaseModel):
    ticker: str
    sentiment: DaySentiment
    scores: list[SentimentScore]
    forecast: ForecastResponse
    sentiment_model_version: str
    model_version: str


class ErrorResponse(BaseModel):
    detail: str | list


# ---- deployment configs (user_config: applied by reconfigure, no replica restart) ------------------


class BatchConfig(BaseModel):
    max_batch_size: int = Field(32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=5)


class SentimentModelConfig(BatchConfig):
    """user_config of SentimentModel[Canary]; ``model`` None = this slot holds no model (idle canary)."""

    model_config = ConfigDict(protected_namespaces=())
    model: str | None = None
    loader: str = "finpulse.sentiment.model:load_classifier"
    loader_kwargs: dict = Field(default_factory=dict)
    device: str = "cpu"


class ForecasterConfig(BatchConfig):
    """user_config of Forecaster[Canary]: the model and where the daily features come from."""

    model_config = ConfigDict(protected_namespaces=())
    model: str | None = None
    loader: str = "finpulse.forecast.model:load_forecaster"
    features_uri: str | None = Field(None, description="ETL output root (daily_features dataset) or a parquet file.")
    max_staleness_days: int = Field(7, ge=0, description="as_of later than the last feature day by more -> 404.")
    live_features_uri: str | None = Field(None, description="The stream processor's features folder: newer rows "
                                                            "are taken as they land, without a restart.")
    live_refresh_s: float = Field(0.5, gt=0, le=60, description="How often the live folder is checked.")


class RateLimit(BaseModel):
    """A token bucket: ``rate_per_s`` requests a second on average, bursts of up to ``burst``."""

    model_config = ConfigDict(extra="forbid")
    rate_per_s: float = Field(50.0, gt=0, allow_inf_nan=False)
    burst: int = Field(100, ge=1)


class GatewayConfig(BatchConfig):
    """user_config of the Gateway: canary weights, limits and hop batching."""

    weights: dict[Literal["sentiment", "forecast"], float] = Field(
        default_factory=lambda: {"sentiment": 0.0, "forecast": 0.0})
    max_texts: int = Field(256, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    health_ttl_s: float = Field(2.0, ge=0.0, description="Age at which /healthz re-checks a ready state "
                                                          "(in the background; probes answer from memory).")
    nats_url: str | None = Field(None, description="The live feed's broker for POST /v1/posts (None: not offered).")
    replica_retry_pauses_s: tuple[float, ...] = Field(
        (0.05, 0.25), description="Pauses before re-sending a hop whose model replica died mid-call (one retry each).")
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Per API key and Gateway replica, "
                                  "unless the key's own entry sets one (access.py).")

    def weight(self, model: str) -> float:
        return min(max(float(self.weights.get(model, 0.0)), 0.0), 1.0)
