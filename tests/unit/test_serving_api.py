"""The HTTP API over an in-process backend (real tiny models, no Serve): answers, errors, canary split."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finpulse.serving.api import create_api
from finpulse.serving.feature_store import day_aggregate
from finpulse.serving.router import LocalBackend
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, SentimentModelConfig, SignalRequest
from tests.support.access import AUTH, keyring
from tests.support.serving import build_test_models

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_test_models(tmp_path_factory.mktemp("models"))


def _backend(models, weights=None, sentiment_model="sent_a", **gateway) -> LocalBackend:
    s = {"stable": SentimentModelConfig(model=models.get(sentiment_model, sentiment_model)),
         "canary": SentimentModelConfig(model=models["sent_b"])}
    f = {"stable": ForecasterConfig(model=models["fc_a"], features_uri=models["features"]),
         "canary": ForecasterConfig(model=models["fc_b"], features_uri=models["features"])}
    return LocalBackend(s, f, GatewayConfig(weights=weights or {}, **gateway), seed=0)


@pytest.fixture(scope="module")
def client(models):
    return TestClient(create_api(_backend(models), keys=keyring()), raise_server_exceptions=False, headers=AUTH)


def test_sentiment_forecast_signal_models_health(client):
    r = client.post("/v1/sentiment", json={"texts": ["strong earnings beat", "", "crash " * 5000, "🚀🚀"]})
    assert r.status_code == 200 and r.headers["x-model-version"] == "sent-a"
    body = r.json()
    assert body["model_version"] == "sent-a" and len(body["results"]) == 4  # long text truncated, not rejected
    for res in body["results"]:
        assert res["label"] in ("negative", "neutral", "positive")
        assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert res["score"] == pytest.approx(res["probabilities"]["positive"] - res["probabilities"]["negative"])

    r = client.post("/v1/forecast", json={"ticker": "aapl"})
    assert r.status_code == 200 and r.headers["x-model-version"] == "fc-a"
    f = r.json()
    assert f["ticker"] == "AAPL" and f["as_of"] == "2020-12-31" and f["interval"]["level"] == pytest.approx(0.9)
    assert math.isfinite(f["predicted_close"]) and f["predicted_close"] > 0
    assert f["predicted_close"] == pytest.approx(132.69 * math.exp(f["predicted_return"]), rel=1e-2)

    r = client.post("/v1/forecast", json={"ticker": "MSFT", "as_of": "2020-06-06"})
    assert r.status_code == 200 and r.json()["as_of"] == "2020-06-05"

    r = client.post("/v1/signal", json={"ticker": "TSLA", "texts": ["good rally", "bad loss"], "closes": [700, 705.5]})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["sentiment"]["sent_count"] == 2 and s["forecast"]["ticker"] == "TSLA"
    assert s["sentiment"]["sent_mean"] == pytest.approx(sum(x["score"] for x in s["scores"]) / 2)
    assert r.headers["x-model-version"] == "forecast=fc-a;sentiment=sent-a"
    # engagement per text weighs sent_weighted as the ETL does; a count that does not match the texts is a 422
    # (texts the untrained tiny model scores apart: with equal scores any weighting gives the mean)
    w = client.post("/v1/signal", json={"ticker": "TSLA", "texts": ["🚀🚀", "good rally"], "closes": [700, 705.5],
                                        "likes": [900, 0], "reposts": [90, 0]})
    assert w.status_code == 200, w.text
    (s1, s2), heavy = [x["score"] for x in w.json()["scores"]], 1 + math.log1p(990)
    assert s1 != s2
    assert w.json()["sentiment"]["sent_weighted"] == pytest.approx((heavy * s1 + s2) / (heavy + 1))
    bad = client.post("/v1/signal", json={"ticker": "TSLA", "texts": ["good rally", "bad loss"], "likes": [1]})
    assert bad.status_code == 422 and "likes has 1 values for 2 texts" in bad.text
    # the composed path uses the day's sentiment and closes: the forecast differs from the stored day's
    plain = client.post("/v1/forecast", json={"ticker": "TSLA"}).json()
    assert s["forecast"]["predicted_close"] != pytest.approx(plain["predicted_close"])

    m = client.get("/v1/models").json()["models"]
    assert m["sentiment"]["stable"]["version"] == "sent-a" and m["forecast"]["canary"]["version"] == "fc-b"
    assert m["forecast"]["stable"]["features"]["tickers"] == ["AAPL", "MSFT", "TSLA"]
    assert client.get("/healthz").status_code == 200
    assert "/v1/forecast" in client.get("/openapi.json").json()["paths"]



def test_the_router_composes_the_signal(models):
    """Score -> aggregate -> forecast lives in the backend (the route only shapes it): the aggregate is
    the ETL's aggregation of the returned scores, the forecast the one made with that aggregate, and
    one request key picks the slot of both hops."""
    backend = _backend(models, weights={"sentiment": 0.5, "forecast": 0.5})
    req = SignalRequest(ticker="TSLA", texts=["🚀🚀", "good rally"], closes=[700, 705.5], likes=[900, 0])
    for key in ("user-1", "user-2", "user-3", "user-4"):  # both slots: user-2 lands on the canary
        r = asyncio.run(backend.signal(req, key))
        assert r.aggregate == day_aggregate(r.scores, [900, 0], None) and r.aggregate["sent_count"] == 2
        assert r.aggregate != day_aggregate(r.scores)  # the engagement counted
        item = {"ticker": "TSLA", "as_of": None, "sentiment": r.aggregate, "closes": [700, 705.5]}
        forecast, version = asyncio.run(backend.forecast(item, key))
        assert r.forecast == forecast and r.forecast_version == version
        assert r.sentiment_version == {"stable": "sent-a", "canary": "sent-b"}[backend.pick("sentiment", key)]
        assert r.forecast_version == {"stable": "fc-a", "canary": "fc-b"}[backend.pick("forecast", key)]

@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/forecast", {"ticker": "NOPE"}, 404),
    ("/v1/forecast", {"ticker": "AAPL", "as_of": "2001-01-01"}, 404),
    ("/v1/forecast", {"ticker": "AAPL", "as_of": "2020-01-03"}, 422),  # not enough history before it
    ("/v1/forecast", {"ticker": 12}, 422),
    ("/v1/forecast", {}, 422),
    ("/v1/forecast", {"ticker": "AAPL", "as_of": "yesterday"}, 422),
    ("/v1/sentiment", {"texts": "not a list"}, 422),
    ("/v1/sentiment", {"texts": []}, 422),
    ("/v1/sentiment", {"texts": [1, 2]}, 422),
    ("/v1/sentiment", {"texts": ["x"] * 257}, 413),
    ("/v1/signal", {"ticker": "AAPL", "texts": ["x"], "closes": [-1.0]}, 422),
    ("/v1/signal", {"ticker": "AAPL", "texts": ["x"] * 300}, 413),
])
def test_bad_input_gets_clear_status(client, path, body, status):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("raw", [b'{"ticker": "AAPL", "texts": ["x"], "closes": [NaN]}',
                                 b'{"ticker": "AAPL", "texts": ["x"], "closes": [Infinity]}',
                                 b'{"ticker": "AAPL", "texts": ["x"], "closes": [1e999]}', b"{", b"[]", b"null"])
def test_nan_infinity_and_broken_json_are_422_with_field_errors(client, raw):
    r = client.post("/v1/signal", content=raw, headers=JSON)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], list) and r.json()["detail"][0]["loc"][0] == "body"


def test_body_limit_is_413(client):
    big = json.dumps({"texts": ["x" * 1000] * 200}).encode()
    assert len(big) < 1_000_000 and client.post("/v1/sentiment", content=big, headers=JSON).status_code == 200
    huge = json.dumps({"texts": ["x" * 600_000, "y" * 600_000]}).encode()
    assert client.post("/v1/sentiment", content=huge, headers=JSON).status_code == 413


def test_503_while_a_model_is_not_loaded(models):
    c = TestClient(create_api(_backend(models, sentiment_model="/no/such/model"), keys=keyring()),
                   raise_server_exceptions=False, headers=AUTH)
    r = c.post("/v1/sentiment", json={"texts": ["hi"]})
    assert r.status_code == 503 and "not loaded" in r.json()["detail"]
    assert c.get("/healthz").status_code == 503
    assert c.post("/v1/forecast", json={"ticker": "AAPL"}).status_code == 200  # the other model still serves


def test_canary_split_and_sticky_keys(models):
    c = TestClient(create_api(_backend(models, weights={"forecast": 0.2}), keys=keyring()), headers=AUTH)
    versions = [c.post("/v1/forecast", json={"ticker": "AAPL"}).headers["x-model-version"] for _ in range(1000)]
    assert abs(versions.count("fc-b") / 1000 - 0.2) < 0.04
    keyed = {c.post("/v1/forecast", json={"ticker": "AAPL"}, headers={"X-Request-Key": "client-7"})
             .headers["x-model-version"] for _ in range(20)}
    assert len(keyed) == 1


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_bodies = st.one_of(
    _json_values,
    st.fixed_dictionaries({}, optional={"ticker": _json_values | st.sampled_from(["AAPL", "msft", "ZZZ", ""]),
                                        "texts": _json_values | st.lists(st.text(max_size=30), max_size=5),
                                        "closes": _json_values | st.lists(st.floats(), max_size=5),
                                        "as_of": _json_values | st.dates().map(str)}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/v1/sentiment", "/v1/forecast", "/v1/signal"]), body=_bodies)
def test_generated_bad_requests_never_5xx(client, path, body):
    raw = json.dumps(body, allow_nan=True).encode()
    r = client.post(path, content=raw, headers=JSON)
    assert r.status_code < 500 or r.status_code == 503, (path, raw, r.status_code, r.text)
    r.json()  # always a JSON answer


def test_service_still_answers_after_fuzzing(client):
    test_generated_bad_requests_never_5xx(client)
    assert client.post("/v1/forecast", json={"ticker": "AAPL"}).status_code == 200
    assert client.post("/v1/sentiment", json={"texts": ["ok"]}).status_code == 200
