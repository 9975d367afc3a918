"""API keys and per-key rate limits on the HTTP API over the in-process backend (real tiny models, no
Serve): 401/403/429, the open paths, hashed storage, where keys are loaded from, and that no key or
hash ever reaches a log."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest
from fastapi.testclient import TestClient

from finpulse.serving.access import (
    AccessControl,
    KeyEntry,
    KeyRing,
    KeysError,
    TokenBuckets,
    hash_key,
    keys_json,
    new_key,
)
from finpulse.serving.api import _error, create_api
from finpulse.serving.api_keys import create_key, revoke_key
from finpulse.serving.router import LocalBackend
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, RateLimit, SentimentModelConfig
from tests.support.access import AUTH, READ_AUTH, READ_KEY, TEST_KEY, keyring
from tests.support.serving import build_test_models


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_test_models(tmp_path_factory.mktemp("access_models"))


def _backend(models, **gateway) -> LocalBackend:
    return LocalBackend({"stable": SentimentModelConfig(model=models["sent_a"])},
                        {"stable": ForecasterConfig(model=models["fc_a"], features_uri=models["features"])},
                        GatewayConfig(**gateway), seed=0)


@pytest.fixture(scope="module")
def client(models):
    return TestClient(create_api(_backend(models), keys=keyring()), raise_server_exceptions=False)


def test_401_without_or_with_a_wrong_key_like_every_other_error(client):
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": new_key()}, {"X-API-Key": TEST_KEY + "x"}):
        r = client.post("/v1/forecast", json={"ticker": "AAPL"}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "ApiKey", headers
        assert r.json()["detail"] in ("missing API key: send it in the X-API-Key header", "invalid API key")
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/posts", json={"posts": [{"post_id": "1"}]}).status_code == 401


def test_scopes_read_and_write(client):
    assert client.post("/v1/forecast", json={"ticker": "AAPL"}, headers=READ_AUTH).status_code == 200
    assert client.post("/v1/sentiment", json={"texts": ["good"]}, headers=READ_AUTH).status_code == 200
    assert client.get("/v1/models", headers=READ_AUTH).status_code == 200
    r = client.post("/v1/posts", json={"posts": [{"post_id": "1"}]}, headers=READ_AUTH)
    assert r.status_code == 403 and r.json()["detail"] == "API key 'reader' lacks the 'write' scope this route needs"
    # a write key reaches the route (no broker configured here: 503 from the route, not from access)
    r = client.post("/v1/posts", json={"posts": [{"post_id": "1"}]}, headers=AUTH)
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_scopes_hold_under_a_route_prefix(models):
    """Mounted under a prefix (a Serve route_prefix sets root_path), /api/v1/posts is still the write route."""
    c = TestClient(create_api(_backend(models), keys=keyring()), root_path="/api")
    for path in ("/api/v1/posts", "/v1/posts"):
        r = c.post(path, json={"posts": [{"post_id": "1"}]}, headers=READ_AUTH)
        assert r.status_code == 403 and "'write'" in r.json()["detail"], path
    assert c.post("/api/v1/forecast", json={"ticker": "AAPL"}, headers=READ_AUTH).status_code == 200
    assert c.get("/api/healthz").status_code == 200 and c.get("/api/v1/models").status_code == 401


def test_write_only_key_cannot_read(models):
    write_only = KeyRing([KeyEntry(name="feeder", sha256=hash_key(TEST_KEY), scopes=["write"])])
    c = TestClient(create_api(_backend(models), keys=write_only), headers=AUTH)
    r = c.post("/v1/forecast", json={"ticker": "AAPL"})
    assert r.status_code == 403 and "'read'" in r.json()["detail"]


def test_open_paths_and_no_metrics_on_the_api_port(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`finpulse keys create` makes one."}
    posts = spec["paths"]["/v1/posts"]["post"]
    assert posts["security"] == [{"ApiKey": []}] and "`write` scope" in posts["description"]
    assert {"401", "403", "429"} <= set(spec["paths"]["/v1/forecast"]["post"]["responses"])
    assert "security" not in spec["paths"]["/healthz"]["get"]
    # Prometheus metrics are on Ray's metrics port, never here: 401 without a key, 404 with one
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 404


def test_no_keys_configured_refuses_everything_and_warns_once(models, caplog):
    with caplog.at_level(logging.WARNING, logger="finpulse.serving.access"):
        ring = KeyRing.from_env({})
        c = TestClient(create_api(_backend(models), keys=ring))
        statuses = {c.post("/v1/forecast", json={"ticker": "AAPL"}, headers=h).status_code
                    for h in ({}, AUTH, READ_AUTH) for _ in range(3)}
        assert statuses == {401} and c.get("/healthz").status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no API keys configured" in warnings[0].getMessage()


def test_429_with_retry_after_then_reconfigured_without_restart(models):
    backend = _backend(models, rate_limit={"rate_per_s": 0.1, "burst": 2})
    c = TestClient(create_api(backend, keys=keyring()))
    got = [c.get("/v1/models", headers=READ_AUTH) for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert got[2].headers["retry-after"] == "10"  # one token every 10 s, in whole seconds
    assert got[2].json()["detail"] == ("rate limit of 0.1 requests/s (burst 2) exceeded for API key 'reader': "
                                       "retry after 10 s")
    assert all(c.get("/v1/models", headers=AUTH).status_code == 200 for _ in range(20))  # its own rate wins
    backend.reconfigure(GatewayConfig(rate_limit={"rate_per_s": 1000, "burst": 5}))  # what a user_config edit does
    assert c.get("/v1/models", headers=READ_AUTH).status_code == 200


def test_token_bucket_refills_at_the_rate_up_to_the_burst():
    clock = Clock()
    buckets = TokenBuckets(clock)
    limit = RateLimit(rate_per_s=2.0, burst=3)
    assert [buckets.take("a", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", limit) == pytest.approx(0.5)
    assert buckets.take("b", limit) == 0.0  # per key
    clock.t += 0.25
    assert buckets.take("a", limit) == pytest.approx(0.25)  # half a token so far
    clock.t += 0.25
    assert buckets.take("a", limit) == 0.0
    clock.t += 60  # idle: back to the burst, no more
    assert [buckets.take("a", limit) for _ in range(4)][-1] == pytest.approx(0.5)
    clock.t += 0.5
    assert buckets.take("a", RateLimit(rate_per_s=2.0, burst=1)) == 0.0  # a smaller burst applies at once
    assert buckets.take("a", RateLimit(rate_per_s=2.0, burst=1)) == pytest.approx(0.5)


def test_middleware_retry_after_is_whole_seconds_at_least_one():
    clock = Clock()
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(msg):
        sent.append(msg)

    limit = RateLimit(rate_per_s=4.0, burst=1)
    mw = AccessControl(app, keyring(), lambda: limit, _error, buckets=TokenBuckets(clock))
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": [(b"x-api-key", READ_KEY.encode())]}

    def status_and_retry() -> tuple[int, str | None]:
        sent.clear()
        asyncio.run(mw(scope, receive, send))
        headers = dict(sent[0].get("headers", []))
        return sent[0]["status"], (headers.get(b"retry-after") or b"").decode() or None

    assert status_and_retry() == (200, None)
    assert status_and_retry() == (429, "1")  # 0.25 s to wait: rounded up to 1
    clock.t += 0.25
    assert status_and_retry() == (200, None)


def test_keys_from_env_or_file_stored_hashed_and_followed(tmp_path, monkeypatch):
    key = new_key()
    entries = [KeyEntry(name="svc", sha256=hash_key(key), scopes=["read"])]
    assert KeyRing.from_env({"FINPULSE_API_KEYS": keys_json(entries)}).match(key).name == "svc"

    path = tmp_path / "secrets" / "api_keys.json"
    created = create_key(path, "alice", ["write", "read"], RateLimit(rate_per_s=5, burst=10))
    text = path.read_text()
    assert created not in text and hash_key(created) in text  # only the hash is stored
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path.parent).st_mode & 0o777 == 0o700
    clock = Clock()
    ring = KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)}, clock=clock)
    alice = ring.match(created)
    assert alice.scopes == ["read", "write"] and alice.rate_limit == RateLimit(rate_per_s=5, burst=10)
    assert ring.match(key) is None and ring.match(created.encode()).name == "alice"

    bob = create_key(path, "bob", ["read"])  # `finpulse keys create` while serving
    clock.t += 2.5
    assert ring.match(bob).name == "bob"
    revoke_key(path, "alice")
    clock.t += 2.5
    assert ring.match(created) is None and ring.match(bob) is not None
    path.write_text("{not json")  # a bad edit: the previous keys stay
    clock.t += 2.5
    assert ring.match(bob) is not None
    path.unlink()  # the file gone: nothing is accepted
    clock.t += 2.5
    assert ring.match(bob) is None

    with pytest.raises(KeysError, match="not both"):
        KeyRing.from_env({"FINPULSE_API_KEYS": keys_json(entries), "FINPULSE_API_KEYS_FILE": str(path)})
    with pytest.raises(KeysError, match="exists"):
        create_key(tmp_path / "k.json", "x", ["read"]) and create_key(tmp_path / "k.json", "x", ["read"])
    with pytest.raises(KeysError, match="no key named 'nobody'"):
        revoke_key(tmp_path / "k.json", "nobody")


@pytest.mark.parametrize(("doc", "field"), [
    ({"keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["read"]}, {"name": "b", "sha256": "XYZ", "scopes": []}]},
     "keys.1.sha256"),
    ({"keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["admin"]}]}, "keys.0.scopes.0"),
    ({"keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["read"], "rate_limit": {"rate_per_s": 0, "burst": 1}}]},
     "keys.0.rate_limit.rate_per_s"),
    ({"keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["read"], "key": "fp_plaintext"}]}, "keys.0.key"),
    ({"keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["read"]}] * 2}, "duplicate key names ['a']"),
])
def test_bad_keys_file_names_the_field_never_the_value(tmp_path, doc, field):
    path = tmp_path / "api_keys.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeysError) as err:
        KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)})
    message = str(err.value)
    assert message.startswith(f"FINPULSE_API_KEYS_FILE={path}:") and field in message
    assert "XYZ" not in message and "fp_plaintext" not in message and "0" * 64 not in message
    path.write_text("[1, 2")
    with pytest.raises(KeysError, match="Invalid JSON"):
        KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)})


def test_keys_and_hashes_never_reach_the_logs(models, tmp_path, caplog):
    """Every logger at DEBUG while good, wrong, missing and rate-limited keys are sent, a keys file is
    reloaded, and a bad one is refused: neither a key nor its hash appears in any record."""
    good, wrong = new_key(), new_key()
    path = tmp_path / "api_keys.json"
    path.write_text(keys_json([KeyEntry(name="svc", sha256=hash_key(good), scopes=["read"],
                                        rate_limit=RateLimit(rate_per_s=0.5, burst=2))]))
    clock = Clock()
    with caplog.at_level(logging.DEBUG):
        ring = KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)}, clock=clock)
        c = TestClient(create_api(_backend(models), keys=ring), raise_server_exceptions=False)
        statuses = [c.post("/v1/forecast", json={"ticker": "AAPL"}, headers={"X-API-Key": k}).status_code
                    for k in (good, wrong, good, good, "", good + " ")]
        assert statuses == [200, 401, 200, 429, 401, 401]
        path.write_text(path.read_text().replace('"read"', '"nope"'))  # a bad edit, reloaded and refused
        clock.t += 5
        assert c.post("/v1/forecast", json={"ticker": "AAPL"}, headers={"X-API-Key": wrong}).status_code == 401
        with pytest.raises(KeysError):
            KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)})
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "API keys not reloaded" in text  # the reload was logged ...
    for secret in (good, wrong, hash_key(good), hash_key(wrong)):
        assert secret not in text and secret not in caplog.text  # ... without what it must not show
