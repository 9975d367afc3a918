"""The canary soak's pure core: verdicts, PSI, quantiles, window deltas, exposition parsing; and the
Gateway's per-slot request metric (real API over the in-process backend, real tiny models)."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from finpulse.monitoring.metrics import GROSS_RETURN_BOUNDARIES, LATENCY_MS_BOUNDARIES
from finpulse.serving.api import create_api
from finpulse.serving.router import LocalBackend, SlotRecorder, SlotScope
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, SentimentModelConfig
from finpulse.serving.soak import (
    LATENCY_BUCKET,
    REQUESTS,
    RETURNS_BUCKET,
    SlotStats,
    SoakPolicy,
    compare,
    psi,
    quantile,
    series,
    window_stats,
)
from finpulse.serving.soak_sources import parse_text
from tests.support.access import AUTH, keyring
from tests.support.serving import build_test_models

POLICY = SoakPolicy(min_requests=50, max_error_rate_increase=0.02, max_p99_ratio=1.5, p99_floor_ms=50,
                    max_prediction_psi=0.25, min_predictions=50)
SAME = (5.0, 10.0, 40.0, 40.0, 10.0)


def test_healthy_canary_is_promoted_with_reasons():
    v = compare(SlotStats(1000, 5, 120.0, SAME), SlotStats(200, 1, 130.0, tuple(x * 0.6 for x in SAME)), POLICY)
    assert v.action == "promote"
    assert any("5xx rate" in r for r in v.reasons) and any("p99" in r for r in v.reasons)
    assert any("PSI 0.000" in r for r in v.reasons)


@pytest.mark.parametrize("canary, needle", [
    (SlotStats(200, 20, 120.0, SAME), "5xx rate canary 10.0% vs stable 0.5%"),
    (SlotStats(200, 1, 400.0, SAME), "p99 canary 400 ms vs stable 120 ms (x3.33"),
    (SlotStats(200, 1, 120.0, (40.0, 40.0, 10.0, 5.0, 5.0)), "predicted-return PSI"),
])
def test_worse_canary_is_rolled_back_saying_why(canary, needle):
    v = compare(SlotStats(1000, 5, 120.0, SAME), canary, POLICY)
    assert v.action == "rollback" and len(v.reasons) == 1 and needle in v.reasons[0], v.reasons


def test_too_little_traffic_is_inconclusive_and_tiny_p99s_are_not_judged():
    v = compare(SlotStats(1000, 0, 10.0), SlotStats(49, 49, 10.0), POLICY)
    assert v.action == "inconclusive" and "canary 49" in v.reasons[0]
    # 12 ms vs 4 ms is x3 but both are below the floor: not a latency regression
    assert compare(SlotStats(100, 0, 4.0), SlotStats(100, 0, 12.0), POLICY).action == "promote"
    # drift is skipped when the policy says so, or when there are too few predictions
    far = (100.0, 0.0, 0.0, 0.0, 0.0)
    assert compare(SlotStats(100, 0, 9.0, SAME), SlotStats(100, 0, 9.0, far),
                   SoakPolicy(max_prediction_psi=None)).action == "promote"
    assert compare(SlotStats(100, 0, 9.0, SAME), SlotStats(100, 0, 9.0, (10.0, 0, 0, 0, 0)), POLICY).action == "promote"


def test_psi_and_quantile_match_known_values():
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(0.9 / 0.5) - 0.4 * math.log(0.1 / 0.5))
    # Prometheus' histogram_quantile: linear inside the bucket; +Inf -> the largest finite bound
    assert quantile(0.99, {100.0: 10.0, 500.0: 100.0, math.inf: 100.0}) == pytest.approx(495.5555, rel=1e-4)
    assert quantile(0.5, {10.0: 100.0, math.inf: 100.0}) == 5.0
    assert quantile(0.99, {10.0: 0.0, 20.0: 0.0, math.inf: 10.0}) == 20.0
    assert quantile(0.99, {10.0: 0.0, math.inf: 0.0}) is None


def _requests(slot, status, route, value):
    return (REQUESTS, {"slot": slot, "status": str(status), "route": route, "model_version": "v"}, value)


def _buckets(name, slot, counts, bounds, route="/v1/forecast"):
    rows, total = [], 0.0
    for b, c in zip([*bounds, math.inf], counts, strict=True):
        total += c
        labels = {"slot": slot, "le": "+Inf" if math.isinf(b) else str(float(b))}
        if name == LATENCY_BUCKET:
            labels["route"] = route
        rows.append((name, labels, total))
    return rows


def test_window_stats_take_deltas_per_slot_and_model():
    n_lat, n_ret = len(LATENCY_MS_BOUNDARIES) + 1, len(GROSS_RETURN_BOUNDARIES) + 1
    before = series([_requests("stable", 200, "/v1/forecast", 1000), _requests("canary", 200, "/v1/forecast", 5),
                     *_buckets(LATENCY_BUCKET, "stable", [0] * 3 + [1000] + [0] * (n_lat - 4), LATENCY_MS_BOUNDARIES)])
    after = series([
        _requests("stable", 200, "/v1/forecast", 1100), _requests("canary", 200, "/v1/forecast", 65),
        _requests("canary", 503, "/v1/forecast", 40),  # new series: counts from zero
        _requests("canary", 200, "/v1/sentiment", 999),  # another model's route: ignored
        _requests("none", 404, "/v1/forecast", 77),  # no slot picked: ignored
        *_buckets(LATENCY_BUCKET, "stable", [0] * 3 + [1100] + [0] * (n_lat - 4), LATENCY_MS_BOUNDARIES),
        *_buckets(LATENCY_BUCKET, "canary", [0] * 12 + [100] + [0] * (n_lat - 13), LATENCY_MS_BOUNDARIES),
        *_buckets(RETURNS_BUCKET, "canary", [1.0] * n_ret, GROSS_RETURN_BOUNDARIES),
    ])
    stats = window_stats(before, after, "forecast")
    s, c = stats["stable"], stats["canary"]
    assert (s.requests, s.errors, c.requests, c.errors) == (100, 0, 100, 40)
    assert 5 < s.p99_ms <= 10 and 300 < c.p99_ms <= 500
    assert c.returns == (1.0,) * n_ret and s.returns == ()
    sentiment = window_stats(before, after, "sentiment")
    assert sentiment["canary"].requests == 999 and sentiment["stable"].requests == 0


def test_parse_text_reads_ray_exposition():
    text = """# HELP ray_finpulse_requests_total HTTP requests
# TYPE ray_finpulse_requests_total counter
ray_finpulse_requests_total{route="/v1/forecast",slot="canary",status="503",model_version="none",replica="x"} 7.0
# HELP ray_finpulse_request_latency_ms Gateway latency
# TYPE ray_finpulse_request_latency_ms histogram
ray_finpulse_request_latency_ms_bucket{le="10.0",route="/v1/forecast",slot="stable"} 3.0
ray_finpulse_request_latency_ms_bucket{le="+Inf",route="/v1/forecast",slot="stable"} 4.0
ray_finpulse_request_latency_ms_count{route="/v1/forecast",slot="stable"} 4.0
# TYPE ray_other gauge
ray_other{a="b"} 1.0
"""
    rows = parse_text(text)
    assert (REQUESTS, {"route": "/v1/forecast", "slot": "canary", "status": "503", "model_version": "none",
                       "replica": "x"}, 7.0) in rows
    assert sorted(r[1]["le"] for r in rows if r[0] == LATENCY_BUCKET) == ["+Inf", "10.0"]
    assert len(rows) == 3


class Recorded:
    def __init__(self):
        self.rows = []

    def request(self, route, version, status, seconds, slot="none"):
        self.rows.append((route, version, status, slot))


def test_gateway_request_metric_is_labelled_with_the_slot_that_answered(tmp_path):
    models = build_test_models(tmp_path)
    backend = LocalBackend({"stable": SentimentModelConfig(model=models["sent_a"])},
                           {"stable": ForecasterConfig(model=models["fc_a"], features_uri=models["features"]),
                            "canary": ForecasterConfig(model="/no/such/model", features_uri=models["features"])},
                           GatewayConfig(weights={"forecast": 0.5}), seed=0)
    recorded = Recorded()
    app = create_api(backend, SlotRecorder(recorded), keys=keyring())
    app.add_middleware(SlotScope)
    with TestClient(app, raise_server_exceptions=False, headers=AUTH) as c:
        statuses = [c.post("/v1/forecast", json={"ticker": "AAPL"}, headers={"X-Request-Key": f"k{i}"}).status_code
                    for i in range(40)]
        c.post("/v1/sentiment", json={"texts": ["good"]})
        c.get("/v1/models")
    forecast = [r for r in recorded.rows if r[0] == "/v1/forecast"]
    # the canary has no model: its answers are 503 and counted under slot=canary, version "none"
    assert {(r[2], r[3]) for r in forecast} == {(200, "stable"), (503, "canary")}
    assert statuses.count(503) == sum(r[3] == "canary" for r in forecast) > 5
    assert ("/v1/sentiment", "sent-a", 200, "stable") in recorded.rows
    assert ("/v1/models", "none", 200, "none") in recorded.rows


def test_cli_soak_and_promote_options_and_a_one_line_failure():
    from conftest import free_port
    from typer.testing import CliRunner

    from finpulse import cli

    runner = CliRunner()
    assert "--no-registry" in runner.invoke(cli.app, ["canary", "promote", "--help"], terminal_width=200).output
    help_text = runner.invoke(cli.app, ["canary", "soak", "--help"], terminal_width=200).output
    for opt in ("--window", "--poll", "--prometheus", "--ray-metrics", "--max-p99-ratio", "--settle"):
        assert opt in help_text, opt
    r = runner.invoke(cli.app, ["canary", "soak", "--address", f"http://127.0.0.1:{free_port()}", "--ray-metrics",
                                f"127.0.0.1:{free_port()}", "--settle", "0", "--window", "1", "--poll", "0.5"])
    assert r.exit_code == 1 and "no Ray metrics endpoint answered" in r.output, r.output
