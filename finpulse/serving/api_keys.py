"""The keys file on this machine and the client's key: what ``finpulse keys``, ``finpulse serve``, the
demo and every caller of the API (canary commands, the loop, the dashboard) share.

Server side: ``<home>/secrets/api_keys.json`` (or ``$FINPULSE_API_KEYS_FILE``) holds hashed entries,
written atomically with mode 0600 so a running Gateway never reads half a file. Client side: the key
comes from ``$FINPULSE_API_KEY``, else ``<home>/secrets/api_key``, the plaintext that the first
``finpulse serve`` of a home writes (0600) for the local clients, like Jupyter's token file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from finpulse.serving.access import (
    ENV_KEYS,
    ENV_KEYS_FILE,
    HEADER,
    KeyEntry,
    KeysError,
    Scope,
    field_errors,
    hash_key,
    keys_json,
    new_key,
    read_keys_file,
)
from finpulse.serving.schemas import RateLimit

ENV_CLIENT_KEY = "FINPULSE_API_KEY"  # pragma: allowlist secret - a variable's name
LOCAL_KEY_NAME = "local"


def _secrets_dir() -> Path:
    from finpulse.config import get_settings

    return Path(get_settings().home) / "secrets"


def keys_file() -> Path:
    """Where the hashed keys live: ``$FINPULSE_API_KEYS_FILE``, else ``<home>/secrets/api_keys.json``."""
    return Path(os.environ.get(ENV_KEYS_FILE) or _secrets_dir() / "api_keys.json").absolute()


def client_key_file() -> Path:
    return _secrets_dir() / "api_key"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600 (folder 0700): a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(path: Path, name: str, scopes: list[Scope], rate_limit: RateLimit | None = None) -> str:
    """Append a new key's hashed entry to the file at ``path``; returns the key (the only time it exists)."""
    entries = read_keys_file(path)
    if any(e.name == name for e in entries):
        raise KeysError(f"a key named {name!r} exists in {path}: revoke it first or pick another name")
    key = new_key()
    try:
        entry = KeyEntry(name=name, sha256=hash_key(key), scopes=scopes, rate_limit=rate_limit,
                         created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    except ValidationError as exc:
        raise KeysError(f"key {name!r}: {field_errors(exc)}") from None
    _write_private(path, keys_json([*entries, entry]))
    return key


def revoke_key(path: Path, name: str) -> None:
    entries = read_keys_file(path)
    if not any(e.name == name for e in entries):
        raise KeysError(f"no key named {name!r} in {path}")
    _write_private(path, keys_json([e for e in entries if e.name != name]))


def server_env() -> dict[str, str]:
    """Where the Gateway replicas read their keys, as runtime_env variables: the keys file's path, never
    the keys' JSON (Ray's runtime_env agent logs variables' values, and the dashboard shows them). With
    ``$FINPULSE_API_KEYS`` set, nothing: the replicas take it from the Ray nodes' own environment."""
    if os.environ.get(ENV_KEYS, "").strip():
        return {}
    return {ENV_KEYS_FILE: str(keys_file())}


def bootstrap_local_key(base_url: str) -> str | None:
    """On the first serve of a home (no keys configured at all): one key with read and write, its
    plaintext in ``<home>/secrets/api_key`` (0600). Returns the line to print, else None. A keys file
    that exists, even empty, is left alone: its owner decided."""
    if os.environ.get(ENV_KEYS, "").strip() or keys_file().exists():
        return None
    key = create_key(keys_file(), LOCAL_KEY_NAME, ["read", "write"])
    _write_private(client_key_file(), key + "\n")
    return (f"API key {LOCAL_KEY_NAME!r} (read, write) written to {client_key_file()}: send it with every call, "
            f'e.g. curl -H "{HEADER}: $(cat {client_key_file()})" {base_url}/v1/models')


def client_key() -> str | None:
    """This machine's key for calling the API: ``$FINPULSE_API_KEY``, else ``<home>/secrets/api_key``."""
    key = os.environ.get(ENV_CLIENT_KEY, "").strip()
    if key:
        return key
    try:
        return client_key_file().read_text().strip() or None
    except OSError:
        return None


def client_headers(key: str | None = None) -> dict[str, str]:
    key = key or client_key()
    return {HEADER: key} if key else {}


def curl_header() -> str:
    """The ``-H`` option of a curl line, naming where the key is rather than the key itself."""
    source = f"${ENV_CLIENT_KEY}" if os.environ.get(ENV_CLIENT_KEY, "").strip() else f"$(cat {client_key_file()})"
    return f'-H "{HEADER}: {source}"'
