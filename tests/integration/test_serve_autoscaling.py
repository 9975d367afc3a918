"""SentimentModel scales 1 -> 2 replicas under load and back to 1 when it stops (test-only short delays)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from finpulse.serving import canary
from tests.support.access import AUTH
from tests.support.serving import build_test_models, serve_config

pytestmark = pytest.mark.integration

SMALL = {"num_cpus": 0.1}
AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "metrics_interval_s": 0.5,
               "look_back_period_s": 2, "upscale_delay_s": 1, "downscale_delay_s": 4}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(name: str) -> int:
    from ray import serve

    dep = serve.status().applications["finpulse"].deployments[name]
    return int(dep.replica_states.get("RUNNING", 0))


def _wait(cond, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return False


def test_sentiment_model_scales_up_and_down(ray_head, tmp_path):
    from ray import serve

    models = build_test_models(tmp_path / "models")
    port = _port()
    deployments = [
        {"name": "Gateway", "ray_actor_options": SMALL, "user_config": {"max_batch_size": 4}},
        {"name": "SentimentModel", "ray_actor_options": SMALL, "autoscaling_config": AUTOSCALING,
         "max_ongoing_requests": 4},
        *[{"name": n, "ray_actor_options": SMALL} for n in ("SentimentModelCanary", "Forecaster", "ForecasterCanary")],
    ]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        canary.ServeConfigClient(ray_head["dashboard"]).deploy(serve_config(models, port, deployments))
        url = f"http://127.0.0.1:{port}"
        assert _wait(lambda: _healthy(url), 240)
        assert _running("SentimentModel") == 1

        stop = threading.Event()
        body = {"texts": ["strong earnings beat and a record quarter for the stock " * 8] * 64}

        def load() -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    s.post(f"{url}/v1/sentiment", json=body, headers=AUTH, timeout=60)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            scaled_up = _wait(lambda: _running("SentimentModel") == 2, 120)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert scaled_up, "SentimentModel did not reach 2 replicas under load"
        assert _wait(lambda: _running("SentimentModel") == 1, 120), "did not scale back down"
        assert requests.post(f"{url}/v1/sentiment", json={"texts": ["ok"]}, headers=AUTH, timeout=30).status_code == 200
    finally:
        serve.shutdown()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False
