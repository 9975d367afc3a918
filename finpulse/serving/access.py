"""Who may call the HTTP API, and how often: API keys with scopes, and a token bucket per key (no Ray).

A key is a random token (``fp_`` + 43 URL-safe characters: 256 bits) shown once when it is created;
only its SHA-256 is stored, and a presented key is hashed and compared with ``hmac.compare_digest``.
A fast unsalted hash is enough here: slow, salted hashes protect guessable secrets (passwords), and
nobody guesses 256 random bits; a slow hash would only cost every request.

The keys come from ``FINPULSE_API_KEYS`` (JSON, in the Ray nodes' environment: a Serve config's
runtime_env would put it in Ray's logs) or ``FINPULSE_API_KEYS_FILE`` (a JSON file: how a Kubernetes
Secret is mounted), ``{"keys": [{"name", "sha256", "scopes": ["read", "write"], "rate_limit"?:
{"rate_per_s", "burst"}}]}``. The file is re-read when it changes, so ``finpulse keys
create|revoke`` and a rotated Secret apply without a restart. No keys configured is not "open": every
request but the open paths gets 401, and the Gateway says so once in its log. Keys and their hashes are
never logged, nor echoed in an error (a bad entry is named by its field, never by its value).

Scopes: ``POST /v1/posts`` needs ``write``; every other path (the model routes, ``GET /v1/models``,
unknown paths such as ``/metrics``) needs ``read``. Open: ``/healthz`` (probes carry no keys) and the
OpenAPI schema and its viewers (``/docs``, ``/redoc``, ``/openapi.json``): they describe the API as the
README does, hold no data, and tell a client how to authenticate (the Authorize button sends the key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finpulse.serving.schemas import RateLimit

log = logging.getLogger(__name__)

HEADER = "X-API-Key"
HEADER_BYTES = HEADER.lower().encode()
ENV_KEYS = "FINPULSE_API_KEYS"
ENV_KEYS_FILE = "FINPULSE_API_KEYS_FILE"
KEY_PREFIX = "fp_"
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
WRITE_ROUTES = frozenset({("POST", "/v1/posts")})
Scope = Literal["read", "write"]


def route_path(scope: dict) -> str:
    """The path the app routes on: without the ``root_path`` a proxy mounts it under (a Serve
    ``route_prefix``), as Starlette's router strips it; else ``/api/v1/posts`` would read as a read route."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs; None for the open paths."""
    if path in OPEN_PATHS:
        return None
    return "write" if (method.upper(), path) in WRITE_ROUTES else "read"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


class KeyEntry(BaseModel):
    """One stored key: its name (who holds it), the hash of the key, what it may do, its own rate."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)
    rate_limit: RateLimit | None = None
    created_at: str | None = None

    @field_validator("scopes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return sorted(set(v))


class KeysDocument(BaseModel):
    """The JSON of ``FINPULSE_API_KEYS`` and of the keys file."""

    model_config = ConfigDict(extra="forbid")
    keys: list[KeyEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> KeysDocument:
        names = [k.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate key names {dupes}")
        return self


class KeysError(ValueError):
    """The keys cannot be read as given; the message names the source and the field, never a value."""


def field_errors(exc: ValidationError) -> str:
    """``field: message`` per error, never the offending value (it may be a key or a hash)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())


def parse_keys(text: str, source: str) -> list[KeyEntry]:
    try:
        return KeysDocument.model_validate_json(text).keys
    except ValidationError as exc:
        raise KeysError(f"{source}: {field_errors(exc)}") from None


def read_keys_file(path: str | Path) -> list[KeyEntry]:
    """The entries of a keys file; a missing file holds none."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeysError(f"{ENV_KEYS_FILE}={p}: cannot read ({type(exc).__name__})") from None
    return parse_keys(text, f"{ENV_KEYS_FILE}={p}")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()  # follows the symlinks a mounted Secret swaps on rotation
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeyRing:
    """The keys a replica accepts; from a file they follow its changes (checked every ``reload_s``)."""

    def __init__(self, entries: list[KeyEntry] | None = None, source: str = "(given)", path: str | Path | None = None,
                 reload_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.source, self._path, self._reload_s, self._clock = source, Path(path) if path else None, reload_s, clock
        self._stamp = _stamp(self._path) if self._path else None
        self._checked = clock()
        self._warned = False
        self._set(list(entries or []))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> KeyRing:
        """Keys from ``FINPULSE_API_KEYS`` or ``FINPULSE_API_KEYS_FILE`` (setting both is an error)."""
        env = os.environ if environ is None else environ
        inline, path = env.get(ENV_KEYS, "").strip(), env.get(ENV_KEYS_FILE, "").strip()
        if inline and path:
            raise KeysError(f"set {ENV_KEYS} or {ENV_KEYS_FILE}, not both")
        if inline:
            return cls(parse_keys(inline, ENV_KEYS), source=ENV_KEYS, **kwargs)
        if path:
            return cls(read_keys_file(path), source=f"{ENV_KEYS_FILE}={path}", path=path, **kwargs)
        return cls([], source=f"neither {ENV_KEYS} nor {ENV_KEYS_FILE} is set", **kwargs)

    def _set(self, entries: list[KeyEntry]) -> None:
        self._entries = entries
        if entries:
            self._warned = False
        elif not self._warned:
            self._warned = True
            log.warning("no API keys configured (%s): every request except /healthz and /docs is refused with 401; "
                        "create one with `finpulse keys create`", self.source)

    def entries(self) -> list[KeyEntry]:
        self._maybe_reload()
        return self._entries

    def _maybe_reload(self) -> None:
        if self._path is None or self._clock() - self._checked < self._reload_s:
            return
        self._checked = self._clock()
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            entries = read_keys_file(self._path)
        except KeysError as exc:  # a torn or bad edit: keep serving the keys we had
            log.warning("API keys not reloaded, the previous %d stay: %s", len(self._entries), exc)
            return
        log.info("API keys reloaded from %s: %d keys", self._path, len(entries))
        self._set(entries)

    def match(self, presented: str | bytes) -> KeyEntry | None:
        """The entry whose hash the presented key has, comparing every entry in constant time each."""
        digest = hash_key(presented)
        found = None
        for entry in self.entries():
            if hmac.compare_digest(digest, entry.sha256):
                found = entry
        return found


class TokenBuckets:
    """One token bucket per key name: ``rate_per_s`` tokens a second up to ``burst``; a request takes one.

    The buckets live in the Gateway replica's memory: with N Gateway replicas behind Serve's proxies a
    key may get up to N times its rate. A new rate (a reconfigure) applies from the next request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, name: str, limit: RateLimit) -> float:
        """0.0 when a token was taken, else the seconds until the next one."""
        now = self.clock()
        tokens, at = self._state.get(name, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(now - at, 0.0) * limit.rate_per_s)
        if tokens >= 1.0:
            self._state[name] = (tokens - 1.0, now)
            return 0.0
        self._state[name] = (tokens, now)
        return (1.0 - tokens) / limit.rate_per_s


class AccessControl:
    """ASGI middleware: 401 without a valid ``X-API-Key``, 403 without the route's scope, 429 over the
    key's rate (with ``Retry-After`` in whole seconds). Plain ASGI, as the API's other middlewares.

    ``limits()`` is the Gateway's current default rate (its user_config), read per request so a
    reconfigure applies without a restart; a key's own ``rate_limit`` wins over it. ``error(status,
    detail)`` builds the API's error response, so these look like every other error."""

    def __init__(self, app: Any, keys: KeyRing, limits: Callable[[], RateLimit], error: Callable[[int, Any], Any],
                 buckets: TokenBuckets | None = None):
        self.app, self.keys, self.limits, self.error = app, keys, limits, error
        self.buckets = buckets or TokenBuckets()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = required_scope(scope.get("method", "GET"), route_path(scope))
        if need is None:
            await self.app(scope, receive, send)
            return
        presented = next((v for k, v in scope.get("headers", []) if k == HEADER_BYTES), None)
        refusal = self._refusal(need, presented)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail, headers = refusal
        response = self.error(status, detail)
        for name, value in headers.items():
            response.headers[name] = value
        await response(scope, receive, send)

    def _refusal(self, need: str, presented: bytes | None) -> tuple[int, str, dict[str, str]] | None:
        if not presented:
            return 401, f"missing API key: send it in the {HEADER} header", {"WWW-Authenticate": "ApiKey"}
        entry = self.keys.match(presented)
        if entry is None:
            return 401, "invalid API key", {"WWW-Authenticate": "ApiKey"}
        if need not in entry.scopes:
            return 403, f"API key {entry.name!r} lacks the {need!r} scope this route needs", {}
        limit = entry.rate_limit or self.limits()
        wait = self.buckets.take(entry.name, limit)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return 429, (f"rate limit of {limit.rate_per_s:g} requests/s (burst {limit.burst}) exceeded for API key "
                         f"{entry.name!r}: retry after {retry} s"), {"Retry-After": str(retry)}
        return None


def document_security(app: Any) -> None:
    """Declare the key in the OpenAPI schema: each protected operation names its scope and its
    401/403/429 answers, and Swagger UI (/docs) gets an Authorize button that sends the header."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["ApiKey"] = {
            "type": "apiKey", "in": "header", "name": HEADER, "description": "`finpulse keys create` makes one."}
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                scope = required_scope(method, path)
                if scope is None:
                    continue
                op["security"] = [{"ApiKey": []}]
                op["description"] = f"{op.get('description', '')}\n\nNeeds an API key with the `{scope}` scope.".strip()
                for status, why in (("401", "no valid API key"), ("403", f"the key lacks `{scope}`"),
                                    ("429", "over the key's rate limit (Retry-After)")):
                    op.setdefault("responses", {}).setdefault(status, {"description": why, **ref})
        return schema

    app.openapi = openapi


def keys_json(entries: list[KeyEntry]) -> str:
    """The JSON document of ``entries`` (what the keys file and ``FINPULSE_API_KEYS`` hold)."""
    return json.dumps(KeysDocument(keys=entries).model_dump(exclude_none=True), indent=2) + "\n"
