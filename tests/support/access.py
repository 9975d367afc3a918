"""API keys for tests: fresh random keys per test process (nothing to leak), the key ring a LocalBackend
app is built with, and the ``FINPULSE_API_KEYS`` value a deployed app is given.

``TEST_KEY`` (read and write) has its own high rate so load-shaped tests never see a 429; ``READ_KEY``
(read only) takes the Gateway's configured rate, which is what the rate-limit checks turn down.
"""

from __future__ import annotations

from pathlib import Path

from finpulse.serving.access import HEADER, KeyEntry, KeyRing, hash_key, keys_json, new_key
from finpulse.serving.schemas import RateLimit

TEST_KEY = new_key()
READ_KEY = new_key()
AUTH = {HEADER: TEST_KEY}
READ_AUTH = {HEADER: READ_KEY}
UNLIMITED = RateLimit(rate_per_s=1e6, burst=1_000_000)


def key_entries() -> list[KeyEntry]:
    return [KeyEntry(name="tester", sha256=hash_key(TEST_KEY), scopes=["read", "write"], rate_limit=UNLIMITED),
            KeyEntry(name="reader", sha256=hash_key(READ_KEY), scopes=["read"])]


def keyring() -> KeyRing:
    return KeyRing(key_entries(), source="tests")


def keys_env(where: str | Path = "inline") -> dict[str, str]:
    """runtime_env variables that give a deployed Gateway the test keys: inline, or in a keys file
    written at the path ``where`` (the production way: a mounted Secret)."""
    if where == "inline":
        return {"FINPULSE_API_KEYS": keys_json(key_entries())}
    Path(where).write_text(keys_json(key_entries()))
    return {"FINPULSE_API_KEYS_FILE": str(where)}
