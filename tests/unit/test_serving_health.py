"""/healthz readiness kept in the Gateway: 503 until the stable models load, then cheap (no model calls
per probe), and re-checked in the background so a model that goes away turns it 503 again."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from finpulse.serving.api import create_api
from finpulse.serving.router import LocalBackend, configure_sentiment
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, SentimentModelConfig
from tests.support.access import keyring
from tests.support.serving import build_test_models


class CountingBackend(LocalBackend):
    """The in-process backend, counting the per-slot state queries a Serve Gateway would send as handle calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.info_calls = 0

    async def _info(self, model: str, slot: str) -> dict:
        self.info_calls += 1
        await asyncio.sleep(0.01)  # a handle call is not free: concurrent probes must share one check
        return await super()._info(model, slot)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_test_models(tmp_path_factory.mktemp("health_models"))


def _backend(models, sentiment: str | None, ttl: float) -> CountingBackend:
    s = {"stable": SentimentModelConfig(model=sentiment)}
    f = {"stable": ForecasterConfig(model=models["fc_a"], features_uri=models["features"])}
    return CountingBackend(s, f, GatewayConfig(health_ttl_s=ttl))


def test_503_until_loaded_then_200_without_asking_the_models(models):
    backend = _backend(models, None, ttl=60.0)
    with TestClient(create_api(backend, keys=keyring())) as client:  # /healthz needs no key
        r = client.get("/healthz")
        assert r.status_code == 503 and "sentiment.stable" in r.json()["problems"]
        assert client.get("/healthz").status_code == 503  # not-ready is re-checked on every probe
        configure_sentiment(backend.sentiment_services["stable"], SentimentModelConfig(model=models["sent_a"]))
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json()["problems"] == {}
        calls = backend.info_calls
        for _ in range(50):
            assert client.get("/healthz").status_code == 200
        assert backend.info_calls == calls  # ready and fresh: answered from memory


def test_concurrent_probes_share_one_check(models):
    backend = _backend(models, models["sent_a"], ttl=60.0)

    async def probes() -> list[bool]:
        return [ok for ok, _ in await asyncio.gather(*(backend.health() for _ in range(20)))]

    assert asyncio.run(probes()) == [True] * 20
    assert backend.info_calls == 4  # one check: 2 models x 2 slots


def test_ready_state_is_rechecked_in_the_background(models):
    backend = _backend(models, models["sent_a"], ttl=0.05)

    async def scenario() -> list[bool]:
        seen = [(await backend.health())[0]]
        backend.sentiment_services["stable"].slot.load(None, "unused")  # the stable model goes away
        await asyncio.sleep(0.1)  # older than the ttl
        seen.append((await backend.health())[0])  # still the remembered state; a re-check starts
        await asyncio.sleep(0.2)
        seen.append((await backend.health())[0])
        return seen

    assert asyncio.run(scenario()) == [True, True, False]


def test_reconfigure_forgets_the_remembered_state(models):
    backend = _backend(models, models["sent_a"], ttl=60.0)
    assert asyncio.run(backend.health())[0]
    backend.sentiment_services["stable"].slot.load(None, "unused")
    backend.reconfigure(GatewayConfig(health_ttl_s=60.0))
    ok, detail = asyncio.run(backend.health())
    assert not ok and "sentiment.stable" in detail["problems"]
