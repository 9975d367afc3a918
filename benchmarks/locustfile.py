"""The soak's traffic (benchmarks/_soak.py runs it headless): varied requests at a fixed rate per user.

Bodies come from the JSON file in ``FINPULSE_LOCUST_BODIES`` (benchmarks/_serve_setup.request_bodies),
the per-user rate from ``FINPULSE_LOCUST_USER_RPS``, the API key (if any) from ``FINPULSE_API_KEY``.
The mix: mostly forecasts, then single and 16-text sentiment, signals, and the cheap GETs.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, constant_throughput, task

BODIES = json.loads(open(os.environ["FINPULSE_LOCUST_BODIES"]).read())  # noqa: SIM115 - read once at import
HEADERS = {"X-API-Key": os.environ["FINPULSE_API_KEY"]} if os.environ.get("FINPULSE_API_KEY") else {}


class ApiUser(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("FINPULSE_LOCUST_USER_RPS", "1")))

    def _post(self, path: str, cell: str) -> None:
        self.client.post(path, json=random.choice(BODIES[cell]), headers=HEADERS, name=f"{path} {cell}")  # noqa: S311 - load mix, not crypto

    @task(6)
    def forecast(self) -> None:
        self._post("/v1/forecast", "forecast")

    @task(2)
    def sentiment1(self) -> None:
        self._post("/v1/sentiment", "sentiment1")

    @task(1)
    def sentiment16(self) -> None:
        self._post("/v1/sentiment", "sentiment16")

    @task(1)
    def signal(self) -> None:
        self._post("/v1/signal", "signal")

    @task(1)
    def models(self) -> None:
        self.client.get("/v1/models", headers=HEADERS)

    @task(1)
    def healthz(self) -> None:
        self.client.get("/healthz")
