"""X recent-search client against a real local HTTP server that behaves like ``/2/tweets/search/recent``:
bearer auth, newest-first pages with ``next_token``, ``since_id``/``until_id``, rate-limit headers and
X's error bodies. Time is a fake clock, so waits for a window reset are measured, not waited for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from ingest_fakes import FakeClock, Reply, ScriptedServer, Seen

from finpulse.data.sources import RAW_POST_COLUMNS, normalize_posts
from finpulse.ingest.http import AuthError, InvalidRequest, RetryPolicy, SourceOptions
from finpulse.ingest.x_api import TOKEN_ENV, TWEET_FIELDS, XConfig, XRecentSearch

TOKEN = "AAAA-test-bearer"
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
NOT_ENROLLED = {"client_id": "123", "title": "Client Forbidden", "reason": "client-not-enrolled",
                "required_enrollment": "Appropriate Level of API Access",
                "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and "
                          "tokens from a Twitter developer App that is attached to a Project.",
                "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
                "type": "https://api.twitter.com/2/problems/client-forbidden"}
TOO_MANY = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}


def tweet(i: int, ticker: str, **overrides) -> dict:
    t = {"id": str(1_790_000_000_000_000_000 + i), "text": f"${ticker} post number {i}", "author_id": str(5000 + i % 7),
         "created_at": f"2024-05-17T14:{i // 60:02d}:{i % 60:02d}.000Z", "lang": "en",
         "edit_history_tweet_ids": [str(1_790_000_000_000_000_000 + i)],
         "public_metrics": {"retweet_count": i % 3, "reply_count": 0, "like_count": i, "quote_count": 0,
                            "bookmark_count": 0, "impression_count": 10 * i}}
    t.update(overrides)
    return {k: v for k, v in t.items() if v is not None}


class FakeX:
    """``/2/tweets/search/recent`` over an in-memory corpus per cashtag."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.corpus: dict[str, list[dict]] = {}
        self.remaining = 60
        self.oldest_reachable = 0  # ids below this are older than the 7-day window

    def __call__(self, seen: Seen) -> Reply:
        if seen.path != "/2/tweets/search/recent":
            return Reply(404, {"title": "Not Found Error", "type": "about:blank", "status": 404})
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, UNAUTHORIZED)
        p = seen.params
        size = int(p.get("max_results", "10"))
        if not 10 <= size <= 100:
            return Reply(400, {"errors": [{"parameters": {"max_results": [str(size)]},
                                           "message": f"The `max_results` query parameter value [{size}] is not "
                                                      "between 10 and 100"}],
                               "title": "Invalid Request", "detail": "One or more parameters to your request was "
                               "invalid.", "type": "https://api.twitter.com/2/problems/invalid-request"})
        for key in ("since_id", "until_id"):
            if key in p and int(p[key]) < self.oldest_reachable:
                return Reply(400, {"errors": [{"parameters": {key: [p[key]]}, "message": f"Invalid '{key}':"
                                               f"'{p[key]}'. '{key}' must be a tweet id created after "
                                               "2024-05-10T14:00Z."}],
                                   "title": "Invalid Request", "detail": "One or more parameters to your request "
                                   "was invalid.", "type": "https://api.twitter.com/2/problems/invalid-request"})
        ticker = re.search(r"\$([A-Z]+)", p["query"]).group(1)
        hits = sorted(self.corpus.get(ticker, []), key=lambda t: int(t["id"]), reverse=True)
        hits = [t for t in hits if int(t["id"]) > int(p.get("since_id", "0"))
                and int(t["id"]) < int(p.get("until_id", str(10 ** 30)))]
        start = int(p.get("next_token", "tok-0").split("-")[1])
        page = hits[start:start + size]
        meta: dict = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0]["id"], oldest_id=page[-1]["id"])
        if start + size < len(hits):
            meta["next_token"] = f"tok-{start + size}"
        self.remaining = max(0, self.remaining - 1)
        headers = {"x-rate-limit-limit": "60", "x-rate-limit-remaining": str(self.remaining),
                   "x-rate-limit-reset": str(int(self.clock.now) + 600)}
        return Reply(200, {"data": page, "meta": meta} if page else {"meta": meta}, headers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeX:
    return FakeX(clock)


@pytest.fixture
def server(fake: FakeX) -> Iterator[ScriptedServer]:
    srv = ScriptedServer(fake)
    yield srv
    srv.close()


def client(server: ScriptedServer, clock: FakeClock, state: Path, **kwargs) -> XRecentSearch:
    options = SourceOptions(timing=clock.timing(), seed=3, timeout_s=5,
                            policy=RetryPolicy(attempts=4, base_s=2.0, max_retry_after_s=960.0))
    return XRecentSearch(XConfig(TOKEN, state, base_url=f"{server.url}/2/tweets/search/recent", options=options,
                                 **kwargs))


def ids(frames: list[pd.DataFrame]) -> list[str]:
    return [i for f in frames for i in f["post_id"]]


def test_pages_follow_next_token_and_since_id_is_persisted(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(25)]
    frames: list[pd.DataFrame] = []
    x = client(server, clock, tmp_path / "x_state.json", max_results=10)
    assert x.fetch("tsla", frames.append) == 25
    assert [len(f) for f in frames] == [10, 10, 5] and len(set(ids(frames))) == 25
    assert all(list(f.columns) == RAW_POST_COLUMNS for f in frames)
    first, second = server.requests[0], server.requests[1]
    assert first.params == {"query": "($TSLA OR #TSLA) lang:en -is:retweet", "max_results": "10",
                            "tweet.fields": TWEET_FIELDS}
    assert first.headers["authorization"] == f"Bearer {TOKEN}" and second.params["next_token"] == "tok-10"
    state = json.loads((tmp_path / "x_state.json").read_text())
    assert state["tickers"]["TSLA"] == {"since_id": fake.corpus["TSLA"][-1]["id"], "pending": None}


def test_a_restarted_client_asks_with_since_id_and_repeats_nothing(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(12)]
    seen: list[pd.DataFrame] = []
    client(server, clock, tmp_path / "s.json", max_results=10).fetch("TSLA", seen.append)
    newest = fake.corpus["TSLA"][-1]["id"]
    fake.corpus["TSLA"] += [tweet(i, "TSLA") for i in range(12, 15)]
    restarted = client(server, clock, tmp_path / "s.json", max_results=10)
    later: list[pd.DataFrame] = []
    assert restarted.fetch("TSLA", later.append) == 3
    assert server.requests[-1].params["since_id"] == newest
    assert sorted(ids(later)) == [t["id"] for t in fake.corpus["TSLA"][12:]]
    assert len(set(ids(seen)) | set(ids(later))) == len(ids(seen)) + len(ids(later)) == 15
    assert restarted.fetch("TSLA", later.append) == 0  # nothing new: nothing repeated


def test_a_crash_between_pages_resumes_with_until_id_without_loss_or_repeat(server, fake, clock, tmp_path) -> None:
    fake.corpus["AAPL"] = [tweet(i, "AAPL") for i in range(25)]
    handed: list[pd.DataFrame] = []

    def dies_on_second_page(frame: pd.DataFrame) -> None:
        if len(handed) == 1:
            raise RuntimeError("broker down")
        handed.append(frame)

    with pytest.raises(RuntimeError):
        client(server, clock, tmp_path / "s.json", max_results=10).fetch("AAPL", dies_on_second_page)
    pending = json.loads((tmp_path / "s.json").read_text())["tickers"]["AAPL"]["pending"]
    assert pending == {"newest_id": fake.corpus["AAPL"][24]["id"], "until_id": fake.corpus["AAPL"][15]["id"]}
    restarted = client(server, clock, tmp_path / "s.json", max_results=10)
    assert restarted.fetch("AAPL", handed.append) == 15
    assert server.requests[-2].params["until_id"] == pending["until_id"]
    assert sorted(ids(handed)) == sorted(t["id"] for t in fake.corpus["AAPL"])
    assert len(ids(handed)) == 25
    restarted.fetch("AAPL", handed.append)
    assert server.requests[-1].params["since_id"] == pending["newest_id"] and len(ids(handed)) == 25


def test_ids_older_than_the_window_are_given_up_and_the_walk_restarts(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(30)]
    handed: list[pd.DataFrame] = []
    (tmp_path / "s.json").write_text(json.dumps({"tickers": {"TSLA": {"since_id": "5", "pending": {
        "newest_id": fake.corpus["TSLA"][9]["id"], "until_id": "3"}}}}))
    fake.oldest_reachable = int(fake.corpus["TSLA"][0]["id"])
    x = client(server, clock, tmp_path / "s.json", max_results=10)
    assert x.fetch("TSLA", handed.append) == 20  # posts 0..9 were handed before the outage: not again
    assert sorted(ids(handed)) == [t["id"] for t in fake.corpus["TSLA"][10:]]
    assert [r.params.get("since_id") for r in server.requests[:2]] == ["5", fake.corpus["TSLA"][9]["id"]]
    state = json.loads((tmp_path / "s.json").read_text())["tickers"]["TSLA"]
    assert state == {"since_id": fake.corpus["TSLA"][-1]["id"], "pending": None}


def test_remaining_zero_waits_until_the_reset_before_the_next_request(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(15)]
    fake.remaining = 1  # the first page's headers say 0 left, reset in 600 s
    x = client(server, clock, tmp_path / "s.json", max_results=10)
    reset = clock.now + 600
    assert x.fetch("TSLA", lambda f: None) == 15
    assert clock.sleeps == [pytest.approx(601)] and clock.now >= reset
    assert x.stats.throttled_s == pytest.approx(601) and x.stats.rate_limited == 0


def test_429_with_a_reset_header_waits_for_the_window(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(3)]
    server.queue.append(Reply(429, TOO_MANY, {"x-rate-limit-remaining": "0",
                                              "x-rate-limit-reset": str(int(clock.now) + 300)}))
    x = client(server, clock, tmp_path / "s.json")
    assert x.fetch("TSLA", lambda f: None) == 3
    assert len(server.requests) == 2 and clock.sleeps[0] >= 300
    assert (x.stats.rate_limited, x.stats.retries) == (1, 1)


def test_server_errors_are_retried(server, fake, clock, tmp_path) -> None:
    fake.corpus["TSLA"] = [tweet(i, "TSLA") for i in range(3)]
    server.queue.append(Reply(503, {"title": "Service Unavailable", "type": "about:blank", "status": 503}))
    x = client(server, clock, tmp_path / "s.json")
    assert x.fetch("TSLA", lambda f: None) == 3 and x.stats.errors == 1 and x.stats.retries == 1


def test_401_and_403_are_clear_errors_and_stop_the_poll(server, clock, tmp_path) -> None:
    options = SourceOptions(timing=clock.timing())
    wrong = XRecentSearch(XConfig("nope", tmp_path / "s.json", base_url=f"{server.url}/2/tweets/search/recent",
                                  options=options))
    with pytest.raises(AuthError, match=rf"401 \(Unauthorized\).*{TOKEN_ENV}"):
        list(wrong.poll(["TSLA", "AAPL"], lambda f: None))
    assert len(server.requests) == 1 and wrong.stats.retries == 0
    server.queue.append(Reply(403, NOT_ENROLLED))
    with pytest.raises(AuthError, match=r"client-not-enrolled.*Basic tier"):
        client(server, clock, tmp_path / "s.json").fetch("TSLA", lambda f: None)
    assert not (tmp_path / "s.json").exists()


def test_an_invalid_request_is_reported_per_ticker(server, fake, clock, tmp_path) -> None:
    fake.corpus["AAPL"] = [tweet(i, "AAPL") for i in range(2)]
    server.queue.append(Reply(400, {"errors": [{"parameters": {"since_id": ["1"]}, "message": "Invalid 'since_id':'1'."}],
                                    "title": "Invalid Request", "detail": "One or more parameters to your request "
                                    "was invalid.", "type": "https://api.twitter.com/2/problems/invalid-request"}))
    got = dict(client(server, clock, tmp_path / "s.json").poll(["TSLA", "AAPL"], lambda f: None))
    assert isinstance(got["TSLA"], InvalidRequest) and "Invalid 'since_id'" in str(got["TSLA"])
    assert got["AAPL"] == 2


def test_malformed_posts_are_rows_that_normalize_posts_rejects_with_a_reason(server, fake, clock, tmp_path) -> None:
    fake.corpus["NVDA"] = [tweet(1, "NVDA"), tweet(2, "NVDA", text=None), tweet(3, "NVDA", created_at=None),
                           tweet(4, "NVDA", public_metrics=None)]
    frames: list[pd.DataFrame] = []
    client(server, clock, tmp_path / "s.json").fetch("NVDA", frames.append)
    valid, rejected = normalize_posts(pd.concat(frames, ignore_index=True))
    assert sorted(rejected["reason"]) == ["empty text", "unparseable created_at"]
    assert all(json.loads(r)["source"] == "x:recent_search" for r in rejected["raw"])
    by_id = valid.set_index("post_id")
    one, four = fake.corpus["NVDA"][0], fake.corpus["NVDA"][3]
    assert (by_id.loc[one["id"], "likes"], by_id.loc[one["id"], "reposts"]) == (1, 1)
    assert by_id.loc[one["id"], "author"] == one["author_id"] and by_id.loc[one["id"], "ticker"] == "NVDA"
    assert (by_id.loc[four["id"], "likes"], by_id.loc[four["id"], "reposts"]) == (0, 0)  # no metrics: 0, as in ETL
    assert str(by_id.loc[one["id"], "created_at"]) == "2024-05-17 14:00:01+00:00"


def test_config_and_env_are_checked(tmp_path) -> None:
    with pytest.raises(AuthError, match=TOKEN_ENV):
        XRecentSearch.from_env(tmp_path / "s.json", env={})
    with pytest.raises(ValueError, match=r"10\.\.100"):
        XConfig(TOKEN, tmp_path / "s.json", max_results=5)
    x = XRecentSearch.from_env(tmp_path / "s.json", env={TOKEN_ENV: TOKEN}, query_template="${ticker} -is:reply")
    assert x.query_for("MSFT") == "$MSFT -is:reply" and x.config.max_results == 100
