"""The FinPulse graph on a real Ray Serve: API answers, bad input, canary split without restarts, rollback,
API keys and rate limits."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import free_port, prometheus_query

from finpulse.serving import canary
from finpulse.serving.app import GATEWAY
from finpulse.serving.schemas import ForecasterConfig
from tests.support.access import AUTH, READ_AUTH, READ_KEY, TEST_KEY, key_entries
from tests.support.canary import SLOW_LOADER, make_slow_forecaster
from tests.support.fuzz import fuzz
from tests.support.serving import build_test_models, private_home, serve_config

pytestmark = pytest.mark.integration


def _wait_healthy(url: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = requests.get(f"{url}/healthz", timeout=5)
            if last.status_code == 200:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"gateway not healthy: {getattr(last, 'text', last)}")


@pytest.fixture(scope="module")
def served(ray_head, tmp_path_factory):
    from ray import serve


    home = private_home(tmp_path_factory.mktemp("serve_home"))  # promote/rollback record to MLflow
    home.__enter__()
    models = build_test_models(tmp_path_factory.mktemp("serve_models"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    client = canary.ServeConfigClient(ray_head["dashboard"], api_key=TEST_KEY)
    keys_file = tmp_path_factory.mktemp("serve_keys") / "api_keys.json"  # as a mounted Secret gives it
    small = {"num_cpus": 0.1}
    deps = [{"name": "Gateway", "ray_actor_options": small, "max_ongoing_requests": 16, "max_queued_requests": 16},
            *[{"name": n, "ray_actor_options": small} for n in
              ("SentimentModel", "SentimentModelCanary", "Forecaster", "ForecasterCanary")]]
    client.deploy(serve_config(models, port, deps, keys=keys_file))  # a small Gateway queue: the overload test fills it
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url)
        yield {"url": url, "models": models, "client": client, "metrics": ray_head["metrics"], "keys_file": keys_file}
    finally:
        serve.shutdown()
        home.__exit__(None, None, None)


def _identity(url: str) -> dict:
    m = requests.get(f"{url}/v1/models", headers=AUTH, timeout=10).json()
    ids = {"gateway": (m["gateway"]["pid"], m["gateway"]["started_at"])}
    for model, slots in m["models"].items():
        for slot in ("stable", "canary"):
            ids[f"{model}.{slot}"] = (slots[slot]["pid"], slots[slot]["started_at"])
    return ids


def test_api_answers_through_serve(served):
    url = served["url"]
    with requests.Session() as s:
        s.headers.update(AUTH)
        r = s.post(f"{url}/v1/sentiment", json={"texts": ["good rally", "x" * 20000, "🚀"]}, timeout=30)
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "sent-a" and len(r.json()["results"]) == 3
        r = s.post(f"{url}/v1/forecast", json={"ticker": "AAPL", "as_of": "2020-06-05"}, timeout=30)
        assert r.status_code == 200 and r.json()["as_of"] == "2020-06-05" and r.headers["X-Model-Version"] == "fc-a"
        r = s.post(f"{url}/v1/signal", json={"ticker": "MSFT", "texts": ["bad miss"], "closes": [210.0, 222.4]},
                   timeout=30)
        assert r.status_code == 200 and r.json()["sentiment"]["sent_count"] == 1
        assert s.get(f"{url}/docs", timeout=10).status_code == 200
        assert "/v1/signal" in s.get(f"{url}/openapi.json", timeout=10).json()["paths"]
        for path, body, status in [("/v1/forecast", {"ticker": "ZZZ"}, 404), ("/v1/forecast", {"ticker": 1}, 422),
                                   ("/v1/sentiment", {"texts": ["a"] * 257}, 413),
                                   ("/v1/signal", {"ticker": "AAPL", "texts": ["a"], "closes": [0]}, 422)]:
            assert s.post(f"{url}{path}", json=body, timeout=30).status_code == status
        r = s.post(f"{url}/v1/signal", data=b'{"ticker":"AAPL","texts":["a"],"closes":[NaN]}',
                   headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "finite_number"
        r = s.post(f"{url}/v1/sentiment", data=b'{"texts":["' + b"x" * 1_200_000 + b'"]}',
                   headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 413

    # concurrent requests are batched at each hop and each gets its own answer
    def one(i: int) -> tuple[int, str]:
        t = ["AAPL", "MSFT", "TSLA"][i % 3]
        r = requests.post(f"{url}/v1/forecast", json={"ticker": t}, headers=AUTH, timeout=60)
        return r.status_code, r.json().get("ticker")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(96)))
    assert results == [(200, ["AAPL", "MSFT", "TSLA"][i % 3]) for i in range(96)]


def _versions(url: str, n: int, threads: int = 16, path: str = "/v1/forecast") -> list[str]:
    def worker(count: int) -> list[str]:
        with requests.Session() as s:
            s.headers.update(AUTH)
            return [s.post(f"{url}{path}", json={"ticker": "AAPL"}, timeout=60).headers.get("X-Model-Version", "?")
                    for _ in range(count)]

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [v for part in pool.map(worker, per) for v in part]


def test_canary_split_weight_change_without_restarts_and_rollback(served):
    url, client, models = served["url"], served["client"], served["models"]
    before = _identity(url)
    canary.set_canary(client, "forecast", models["fc_b"], 0.2)
    versions = _versions(url, 2000)
    share = versions.count("fc-b") / len(versions)
    assert set(versions) == {"fc-a", "fc-b"} and abs(share - 0.2) <= 0.03, share

    canary.set_canary(client, "forecast", models["fc_b"], 0.6)  # weight-only change
    versions = _versions(url, 400)
    assert abs(versions.count("fc-b") / 400 - 0.6) < 0.1
    sticky = {requests.post(f"{url}/v1/forecast", json={"ticker": "AAPL"}, headers={"X-Request-Key": "k1", **AUTH},
                            timeout=30).headers["X-Model-Version"] for _ in range(20)}
    assert len(sticky) == 1
    assert _identity(url) == before  # no replica restarted: same processes, same start times

    status = canary.summary(client.models())
    assert status["forecast"]["canary"] == {"version": "fc-b", "weight": 0.6, "ready": True, "error": None}
    canary.rollback(client, "forecast")
    assert set(_versions(url, 200)) == {"fc-a"}
    assert _identity(url) == before


def test_failed_canary_load_is_reported_and_503_not_500(served):
    url, client = served["url"], served["client"]
    with pytest.raises(RuntimeError, match="failed to load"):
        canary.set_canary(client, "sentiment", "/no/such/model", 0.5)
    cfg = canary.with_weight(client.current_config(), "sentiment", 1.0)
    client.deploy(cfg)
    client.wait_for(lambda m: m["models"]["sentiment"]["weights"]["canary"] == 1.0)
    r = requests.post(f"{url}/v1/sentiment", json={"texts": ["hi"]}, headers=AUTH, timeout=30)
    assert r.status_code == 503 and "not loaded" in r.json()["detail"]
    canary.rollback(client, "sentiment")
    assert requests.post(f"{url}/v1/sentiment", json={"texts": ["hi"]}, headers=AUTH, timeout=30).status_code == 200


def test_promote_makes_canary_stable(served):
    url, client, models = served["url"], served["client"], served["models"]
    before = _identity(url)
    canary.set_canary(client, "sentiment", models["sent_b"], 0.1)
    with pytest.raises(ValueError, match="not a registry version"):  # a folder cannot become champion
        canary.promote(client, "sentiment")
    canary.promote(client, "sentiment", registry=False)
    m = client.models()["models"]["sentiment"]
    assert m["stable"]["version"] == "sent-b" and m["weights"]["canary"] == 0.0 and not m["canary"]["ready"]
    r = requests.post(f"{url}/v1/sentiment", json={"texts": ["hi"]}, headers=AUTH, timeout=30)
    assert r.headers["X-Model-Version"] == "sent-b"
    assert _identity(url) == before


def test_custom_metrics_reach_prometheus(served, prometheus):
    """Requests through the Gateway show up in a real Prometheus scraping Ray: by route, model
    version and status; sentiment classes and predicted returns too."""
    url = served["url"]
    with requests.Session() as s:
        s.headers.update(AUTH)
        for _ in range(5):
            assert s.post(f"{url}/v1/forecast", json={"ticker": "AAPL"}, timeout=30).status_code == 200
            assert s.post(f"{url}/v1/sentiment", json={"texts": ["great quarter"]}, timeout=30).status_code == 200
        assert s.post(f"{url}/v1/forecast", json={"ticker": "ZZZ"}, timeout=30).status_code == 404
    try:
        ok = prometheus_query(prometheus, 'ray_finpulse_requests_total{route="/v1/forecast",status="200"}')
    except TimeoutError:
        raw = requests.get(f"http://{served['metrics']}/metrics", timeout=10).text
        names = sorted({line.split("{")[0] for line in raw.splitlines() if "finpulse" in line and not line.startswith("#")})
        series = [line[:300] for line in raw.splitlines() if line.startswith("ray_finpulse_requests_total")]
        raise AssertionError(f"Prometheus has no request samples; Ray exports {names}; {series[:3]}") from None
    assert sum(float(r["value"][1]) for r in ok) >= 5
    assert {r["metric"]["model_version"] for r in ok} <= {"fc-a", "fc-b"}
    assert {r["metric"]["slot"] for r in ok} <= {"stable", "canary"}  # the slot that answered
    assert prometheus_query(prometheus, 'ray_finpulse_requests_total{route="/v1/forecast",status="404"}')
    assert prometheus_query(prometheus, "ray_finpulse_sentiment_predictions_total")
    assert prometheus_query(prometheus, "ray_finpulse_predicted_gross_return_count")
    assert prometheus_query(prometheus, "ray_finpulse_request_latency_ms_bucket")


def _burst(url: str, n: int) -> list[tuple[int, float, str | None]]:
    """``n`` forecast requests at once (one connection each): status, seconds, Retry-After."""
    import aiohttp

    async def main() -> list[tuple[int, float, str | None]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            async def one() -> tuple[int, float, str | None]:
                t0 = time.perf_counter()
                async with s.post(f"{url}/v1/forecast", json={"ticker": "AAPL"}, headers=AUTH,
                                  timeout=aiohttp.ClientTimeout(total=30)) as r:
                    await r.read()
                    return r.status, time.perf_counter() - t0, r.headers.get("Retry-After")

            return await asyncio.gather(*[one() for _ in range(n)])

    return asyncio.run(main())


def test_overload_is_shed_with_503_and_retry_after(served):
    """Past the Gateway's max_ongoing + max_queued (16 + 16 here), Serve answers 503 with Retry-After
    at once; nothing waits without bound, and right after the burst a lone request is fast again."""
    results = _burst(served["url"], 400)
    statuses = Counter(s for s, _, _ in results)
    assert set(statuses) == {200, 503} and statuses[200] >= 32, statuses
    assert {ra for s, _, ra in results if s == 503} == {"1"}
    assert max(t for _, t, _ in results) < 10
    t0 = time.perf_counter()
    assert requests.post(f"{served['url']}/v1/forecast", json={"ticker": "MSFT"}, headers=AUTH,
                         timeout=30).status_code == 200
    assert time.perf_counter() - t0 < 1.0


def _forecaster_pids() -> list[int]:
    from ray.util.state import list_actors

    return [a.pid for a in list_actors(filters=[("class_name", "=", "ServeReplica:finpulse:Forecaster"),
                                                ("state", "=", "ALIVE")])]


def _wait(cond, timeout: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        assert time.perf_counter() - t0 < timeout, "timed out"
        time.sleep(0.2)
    return time.perf_counter() - t0


def test_killed_forecaster_replica_under_load_fails_no_request(served, tmp_path):
    """Two Forecaster replicas, each batch taking 0.2 s so calls are always in flight, under steady load;
    one replica SIGKILLed: the Gateway re-sends the lost hop to the live replica (error share <= 1%;
    without the retry 2-4% of them failed), and Serve brings the replica count back."""
    import os
    import signal

    from ray import serve

    client = served["client"]
    original = client.current_config()
    two = copy.deepcopy(original)
    slow = make_slow_forecaster(served["models"]["fc_a"], tmp_path / "fc_slow", sleep_s=0.2)
    dep = next(d for d in two["applications"][0]["deployments"] if d["name"] == "Forecaster")
    dep["num_replicas"] = 2
    dep["user_config"] = ForecasterConfig(model=str(slow), loader=SLOW_LOADER,
                                          features_uri=served["models"]["features"]).model_dump()
    client.deploy(two)
    _wait(lambda: len(_forecaster_pids()) == 2 and requests.post(
        f"{served['url']}/v1/forecast", json={"ticker": "TSLA"}, headers=AUTH, timeout=30
    ).headers.get("X-Model-Version") == "fc-slow", 120)
    statuses: Counter = Counter()
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as s:
            s.headers.update(AUTH)
            while not stop.is_set():
                statuses[s.post(f"{served['url']}/v1/forecast", json={"ticker": "TSLA"}, timeout=30).status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(12)]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        victim = _forecaster_pids()[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    errors = sum(n for status, n in statuses.items() if status != 200)
    assert statuses[200] > 50 and errors / sum(statuses.values()) <= 0.01, statuses

    def back() -> bool:
        running = serve.status().applications["finpulse"].deployments["Forecaster"].replica_states.get("RUNNING", 0)
        pids = _forecaster_pids()
        return running == 2 and len(pids) == 2 and victim not in pids

    _wait(back, 120)
    client.deploy(original)
    _wait(lambda: len(_forecaster_pids()) == 1, 120)


def test_fuzzing_from_the_openapi_document_finds_no_server_error(served, tmp_path):
    """schemathesis over every operation (valid and invalid inputs, other methods): no 5xx but 503,
    and the service still answers afterwards."""
    r = fuzz(served["url"], 8, tmp_path, api_key=TEST_KEY)
    assert r["fuzz_cases"] >= 100 and r["fuzz_5xx"] == 0, r["fuzz_server_errors"]
    assert r["fuzz_healthz_after"] == 200 and r["fuzz_statuses"].get(200, 0) > 0


def _until(call, accept, timeout: float = 60.0) -> requests.Response:
    """Repeat ``call`` (10 a second) until ``accept(response)``; returns that response."""
    deadline, r = time.time() + timeout, None
    while time.time() < deadline:
        r = call()
        if accept(r):
            return r
        time.sleep(0.1)
    raise TimeoutError(f"not reached in {timeout}s; last: {getattr(r, 'status_code', r)} {getattr(r, 'text', '')}")


def test_deployed_app_enforces_keys_and_rate_limits_without_restarts(served, tmp_path_factory):
    """The Gateway as deployed, its keys in a file as a mounted Secret gives them: 401/403, no metrics on
    the API port, a rate limit set through user_config (429 + Retry-After) and a key revoked in the file,
    each applied without a replica restart; no key and no hash of one in any Ray log."""
    from finpulse.serving.access import hash_key, keys_json

    url, client, keys_file = served["url"], served["client"], served["keys_file"]
    before = _identity(url)
    with requests.Session() as s:
        r = s.get(f"{url}/v1/models", timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "ApiKey" and "X-API-Key" in r.json()["detail"]
        wrong = {"X-API-Key": TEST_KEY[:-1]}
        assert s.post(f"{url}/v1/forecast", json={"ticker": "AAPL"}, headers=wrong, timeout=10).status_code == 401
        r = s.post(f"{url}/v1/posts", json={"posts": [{"post_id": "1"}]}, headers=READ_AUTH, timeout=10)
        assert r.status_code == 403 and "'write'" in r.json()["detail"]
        assert s.get(f"{url}/metrics", timeout=10).status_code == 401  # Ray exports metrics on its own port
        assert s.get(f"{url}/metrics", headers=AUTH, timeout=10).status_code == 404
        assert s.get(f"{url}/healthz", timeout=10).status_code == 200

    cfg = client.current_config()
    gateway = canary.user_config(cfg, GATEWAY)
    slow = {**gateway, "rate_limit": {"rate_per_s": 0.2, "burst": 3}}
    client.deploy(canary._set_user_config(cfg, GATEWAY, slow, canary.APP_NAME))
    models = lambda headers: requests.get(f"{url}/v1/models", headers=headers, timeout=10)  # noqa: E731
    r = _until(lambda: models(READ_AUTH), lambda r: r.status_code == 429)
    assert 1 <= int(r.headers["Retry-After"]) <= 5 and "rate limit of 0.2 requests/s (burst 3)" in r.json()["detail"]
    assert all(models(AUTH).status_code == 200 for _ in range(10))  # the tester key has its own rate

    keys_file.write_text(keys_json([e for e in key_entries() if e.name != "reader"]))  # `finpulse keys revoke`
    _until(lambda: models(READ_AUTH), lambda r: r.status_code == 401, timeout=30)
    keys_file.write_text(keys_json(key_entries()))
    client.deploy(canary._set_user_config(client.current_config(), GATEWAY, gateway, canary.APP_NAME))
    _until(lambda: models(READ_AUTH), lambda r: r.status_code == 200)
    assert _identity(url) == before

    secrets = [k.encode() for k in (TEST_KEY, READ_KEY, hash_key(TEST_KEY), hash_key(READ_KEY))]
    logs = [p for p in tmp_path_factory.getbasetemp().glob("ray*/session_*/logs/**/*") if p.is_file()]
    assert logs and not [p.name for p in logs if any(k in p.read_bytes() for k in secrets)]
