"""API keys for tests: fresh random keys per test process (nothing to leak), the key ring a LocalBackend
app is built with, and the ``FINPULSE_API_KEYS`` value a deployed app is given.

``TEST_KEY`` (read and write) has its own high rate so load-shaped tests never see a 429; ``READ_KEY``
(read only) takes the Gateway's configured rate, which is what the rate-limit checks turn down. Deployed apps read them
from a keys file.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from finpulse.serving.access import HEADER, KeyEntry, KeyRing, hash_key, keys_json, new_key
from finpulse.serving.schemas import RateLimit

TEST_KEY = new_key()
READ_KEY = new_key()
AUTH = {HEADER: TEST_KEY}
READ_AUTH = {HEADER: READ_KEY}
UNLIMITED = RateLimit(rate_per_s=1e6, burst=1_000_000)
_SHARED: Path | None = None


def key_entries() -> list[KeyEntry]:
    return [KeyEntry(name="tester", sha256=hash_key(TEST_KEY), scopes=["read", "write"], rate_limit=UNLIMITED),
            KeyEntry(name="reader", sha256=hash_key(READ_KEY), scopes=["read"])]


def keyring() -> KeyRing:
    return KeyRing(key_entries(), source="tests")


def shared_keys_file() -> Path:
    """The test keys in a file for this test process (removed at exit)."""
    global _SHARED
    if _SHARED is None:
        folder = Path(tempfile.mkdtemp(prefix="finpulse-test-keys-"))
        atexit.register(shutil.rmtree, folder, True)
        _SHARED = folder / "api_keys.json"
        _SHARED.write_text(keys_json(key_entries()))
    return _SHARED


def keys_env(where: str | Path | None = None) -> dict[str, str]:
    """runtime_env variables that give a deployed Gateway the test keys: a keys file (written at
    ``where``, else the shared one), as a mounted Secret gives them. Never the JSON itself: Ray's
    runtime_env agent logs variables' values, and no hash of a key may reach a log."""
    if where is None:
        return {"FINPULSE_API_KEYS_FILE": str(shared_keys_file())}
    Path(where).write_text(keys_json(key_entries()))
    return {"FINPULSE_API_KEYS_FILE": str(where)}
