"""Resolve a Serve config for this machine and deploy it (``finpulse serve``, ``make demo``).

Replicas may start in another working directory, so relative FinPulse settings (data root, sqlite
MLflow, model folders) are made absolute and passed in the application's ``runtime_env``, with where
the Gateway reads its API keys (the home's keys file, created with a first key on the first serve).
A config's ``edge:`` block is FinPulse's, not Serve's: it puts HAProxy on the public port in front of
Serve (finpulse/serving/edge.py), and Serve's proxy moves to a private port.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def resolve_config(path: str | Path, port: int | None = None, args: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The config at ``path`` with absolute FinPulse settings in every application's env_vars (and
    ``args`` overriding the applications' build arguments, e.g. which model version to serve)."""
    from finpulse.config import get_settings, settings_env
    from finpulse.serving.access import ENV_KEYS, ENV_KEYS_FILE
    from finpulse.serving.api_keys import server_env

    cfg = yaml.safe_load(Path(path).read_text())
    cfg.pop("edge", None)
    env = {**settings_env(get_settings()), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    for app in cfg.get("applications", []):
        app["args"] = {**app.get("args", {}), **(args or {})}
        rt = app.setdefault("runtime_env", {})
        own = rt.get("env_vars", {})
        keys = {} if ENV_KEYS in own or ENV_KEYS_FILE in own else server_env()
        rt["env_vars"] = {**env, **keys, **own}  # the config's own values win
    if port is not None:
        cfg.setdefault("http_options", {})["port"] = port
    return cfg


def edge_config(path: str | Path) -> Any:
    """The config's ``edge:`` block (None when absent or disabled)."""
    from finpulse.serving.edge import EdgeConfig

    block = (yaml.safe_load(Path(path).read_text()) or {}).get("edge")
    cfg = EdgeConfig(**block) if block is not None else None
    return cfg if cfg is not None and cfg.enabled else None


_edges: list[Any] = []


def start_edge(config_path: str | Path, cfg: dict[str, Any]) -> str | None:
    """If the config has an edge: move Serve's proxy in ``cfg`` to a private port, start HAProxy on the
    public one and return its URL (stopped by :func:`stop_edges`); else None."""
    from finpulse.serving import edge

    ecfg = edge_config(config_path)
    if ecfg is None:
        return None
    http = cfg.setdefault("http_options", {})
    public = (http.get("host", "127.0.0.1"), int(http.get("port", 8000)))
    http["host"], http["port"] = "127.0.0.1", edge.free_port()  # Serve's proxy: private, behind the edge
    running = edge.start(ecfg, public, http["port"])
    _edges.append(running)
    return running.url


def stop_edges() -> None:
    while _edges:
        _edges.pop().stop()


def write_resolved(path: str | Path, port: int | None = None) -> Path:
    from finpulse.config import get_settings

    out = Path(get_settings().home) / "serve_config.resolved.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(resolve_config(path, port), sort_keys=False))
    return out


EXAMPLES: list[tuple[str, str, dict | None]] = [
    ("POST", "/v1/sentiment", {"texts": ["Shares soared after a record quarter", "Guidance cut, stock plunges"]}),
    ("POST", "/v1/forecast", {"ticker": "AAPL"}),
    ("POST", "/v1/signal", {"ticker": "TSLA", "texts": ["Deliveries beat estimates", "Recall announced"]}),
    ("GET", "/v1/models", None),
]


def example_calls(base_url: str, timeout: float = 60.0) -> list[dict]:
    """Run the README's example calls against a running app with this machine's API key (``api_keys``):
    each curl line (naming where the key is, never the key), status and answer."""
    import json

    import requests

    from finpulse.serving.api_keys import client_headers, curl_header

    out = []
    for method, path, body in EXAMPLES:
        url = f"{base_url.rstrip('/')}{path}"
        curl = f"curl -s {curl_header()} {url}" if body is None else (
            f"curl -s -X POST {url} {curl_header()} -H 'Content-Type: application/json' -d '{json.dumps(body)}'")
        try:
            r = requests.request(method, url, json=body, headers=client_headers(), timeout=timeout)
            answer: object = r.json()
            status = r.status_code
        except Exception as exc:
            answer, status = f"{type(exc).__name__}: {exc}", None
        out.append({"curl": curl, "status": status, "answer": answer})
    return out


def deploy_and_wait(config_path: str | Path, dashboard_url: str, port: int | None = None,
                    timeout: float = 600.0, args: dict[str, Any] | None = None) -> str:
    """From a driver already connected to Ray: deploy the config declaratively (so canary ops work)
    and wait for /healthz; returns the base URL. ``make demo`` calls this, then :func:`example_calls`."""
    from ray import serve

    from finpulse.serving.canary import ServeConfigClient

    cfg = resolve_config(config_path, port, args)
    prepare_keys(cfg)  # before the edge moves Serve's proxy: the key's line names the public URL
    public = start_edge(config_path, cfg)
    http = cfg.get("http_options", {})
    serve.start(http_options={"host": http.get("host", "127.0.0.1"), "port": http.get("port", 8000)})
    ServeConfigClient(dashboard_url).deploy(cfg)
    private = proxy_url(cfg)
    wait_healthy(private, timeout)
    return wait_healthy(public, timeout) if public else private


def proxy_url(cfg: dict[str, Any]) -> str:
    """Where a client on this machine reaches the config's HTTP proxy."""
    http = cfg.get("http_options", {})
    host = "127.0.0.1" if http.get("host", "127.0.0.1") in ("0.0.0.0", "::") else http.get("host", "127.0.0.1")  # noqa: S104 - maps bind-all to loopback for our own client
    return f"http://{host}:{http.get('port', 8000)}"


def prepare_keys(cfg: dict[str, Any]) -> None:
    """Before deploying: a home's first API key (one line says where it is), and the keys each app
    will read checked here, so a bad keys file fails now with the field it gets wrong, not as a
    Gateway that never starts."""
    from finpulse.serving.access import ENV_KEYS_FILE, KeyRing
    from finpulse.serving.api_keys import bootstrap_local_key, keys_file

    envs = [app.get("runtime_env", {}).get("env_vars", {}) for app in cfg.get("applications", [])]
    if any(env.get(ENV_KEYS_FILE) == str(keys_file()) for env in envs):
        line = bootstrap_local_key(proxy_url(cfg))
        if line:
            print(line, flush=True)
    for env in envs:
        KeyRing.from_env({**os.environ, **env})  # what a replica sees: this environment plus the app's


def wait_healthy(base: str, timeout: float = 600.0) -> str:
    """Poll ``base``/healthz until it answers 200 (every replica loaded its model); returns ``base``."""
    import time

    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return base
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{base}/healthz not healthy after {timeout}s")
