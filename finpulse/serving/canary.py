"""Canary operations on a running application, applied as ``user_config`` updates (no replica restarts).

The deployed Serve config is read from the dashboard's REST API, edited here (pure functions on the
config dict) and deployed back, as ``serve deploy`` does. Serve applies a user_config change by
calling ``reconfigure`` on the running replicas: a weight change touches only the Gateway, a version
change makes the canary slot load the new model in place.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import requests

from finpulse.serving.app import APP_NAME, DEPLOYMENT_NAMES, GATEWAY

DEFAULT_DASHBOARD = os.environ.get("RAY_DASHBOARD_ADDRESS", "http://127.0.0.1:8265")
MODELS = ("sentiment", "forecast")


# ---- pure edits of a Serve config dict ------------------------------------------------------------


def _app(config: dict, app_name: str) -> dict:
    for app in config["applications"]:
        if app["name"] == app_name:
            return app
    raise LookupError(f"application {app_name!r} is not deployed")


def _deployment(app: dict, name: str) -> dict:
    deployments = app.setdefault("deployments", [])
    for d in deployments:
        if d["name"] == name:
            return d
    d = {"name": name}
    deployments.append(d)
    return d


def user_config(config: dict, deployment: str, app_name: str = APP_NAME) -> dict:
    return copy.deepcopy(_deployment(_app(config, app_name), deployment).get("user_config") or {})


def _set_user_config(config: dict, deployment: str, value: dict, app_name: str) -> dict:
    out = copy.deepcopy(config)
    _deployment(_app(out, app_name), deployment)["user_config"] = value
    return out


def with_canary_model(config: dict, model: str, version: str | None, app_name: str = APP_NAME) -> dict:
    name = DEPLOYMENT_NAMES[(model, "canary")]
    uc = user_config(config, name, app_name)
    uc["model"] = version
    return _set_user_config(config, name, uc, app_name)


def with_stable_model(config: dict, model: str, version: str, app_name: str = APP_NAME) -> dict:
    name = DEPLOYMENT_NAMES[(model, "stable")]
    uc = user_config(config, name, app_name)
    uc["model"] = version
    return _set_user_config(config, name, uc, app_name)


def with_weight(config: dict, model: str, weight: float, app_name: str = APP_NAME) -> dict:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    uc = user_config(config, GATEWAY, app_name)
    uc.setdefault("weights", {})[model] = float(weight)
    return _set_user_config(config, GATEWAY, uc, app_name)


# ---- the running application ----------------------------------------------------------------------


class DashboardError(RuntimeError):
    """The dashboard cannot be used as asked; the message is one line that names the fix."""


class ApiKeyRefused(DashboardError):
    """The app's HTTP API refused this client's API key (401/403): a fix, not a missing app."""


def cluster_token(token_path: str | None = None) -> str | None:
    """The Ray cluster's auth token, looked up where Ray keeps it: ``RAY_AUTH_TOKEN``, the file at
    ``RAY_AUTH_TOKEN_PATH``, the file ``finpulse serve`` recorded, then ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for p in (os.environ.get("RAY_AUTH_TOKEN_PATH"), token_path, os.path.expanduser("~/.ray/auth_token")):
        try:
            token = open(p).read().strip() if p else ""  # noqa: SIM115 - tiny file
        except OSError:
            continue
        if token:
            return token
    return None


def _auth_headers(token_path: str | None = None) -> dict[str, str]:
    """Sent on every dashboard call: a cluster without token authentication ignores it."""
    token = cluster_token(token_path)
    return {"Authorization": f"Bearer {token}"} if token else {}


_TOKEN_FIX = ("set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on the head node prints it) "  # noqa: S105 - a help message, not a token
              "or RAY_AUTH_TOKEN_PATH to a file holding it")


class ServeConfigClient:
    """Reads and deploys the Serve config through the Ray dashboard (what ``serve deploy`` does), and
    reads the app's /v1/models with an API key (default: this machine's, ``api_keys.client_key``)."""

    def __init__(self, dashboard: str = DEFAULT_DASHBOARD, timeout: float = 30.0, token_path: str | None = None,
                 api_key: str | None = None):
        from finpulse.serving.api_keys import client_headers

        self.dashboard, self.timeout = dashboard.rstrip("/"), timeout
        self.headers = _auth_headers(token_path)
        self.api_headers = client_headers(api_key)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A dashboard call whose failures (down, 401, 403) become one-line :class:`DashboardError`s."""
        url = f"{self.dashboard}{path}"
        try:
            r = requests.request(method, url, headers=self.headers, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise DashboardError(f"no Ray dashboard answers at {self.dashboard}: start the app with `finpulse serve`,"
                                 " or pass --address / set RAY_DASHBOARD_ADDRESS to the cluster's dashboard") from None
        if r.status_code == 401:
            raise DashboardError(f"the Ray dashboard at {self.dashboard} requires a token and none was found: "
                                 f"{_TOKEN_FIX}") from None
        if r.status_code == 403:
            raise DashboardError(f"the Ray dashboard at {self.dashboard} rejected the token found "
                                 f"(another cluster's?): {_TOKEN_FIX}") from None
        return r

    def get_json(self, path: str) -> Any:
        """GET a dashboard API path (e.g. ``/api/prometheus/sd``) as JSON."""
        r = self._request("GET", path)
        r.raise_for_status()
        return r.json()

    def details(self) -> dict:
        r = self._request("GET", "/api/serve/applications/")
        r.raise_for_status()
        return r.json()

    def current_config(self) -> dict:
        """The deployed config, with every deployment's effective user_config filled in."""
        d = self.details()
        apps = []
        for name, app in (d.get("applications") or {}).items():
            cfg = copy.deepcopy(app.get("deployed_app_config"))
            if cfg is None:
                raise RuntimeError(f"application {name!r} was deployed imperatively (serve.run); "
                                   "deploy it from a config (finpulse serve / serve deploy) to use canary ops")
            for dep_name, dep in (app.get("deployments") or {}).items():
                effective = (dep.get("deployment_config") or {}).get("user_config")
                target = _deployment(cfg, dep_name)
                if "user_config" not in target and effective is not None:
                    target["user_config"] = effective
            apps.append(cfg)
        if not apps:
            raise LookupError("no Serve application is deployed")
        out: dict[str, Any] = {"applications": apps}
        if d.get("proxy_location"):
            out["proxy_location"] = d["proxy_location"]
        http = d.get("http_options") or {}
        out["http_options"] = {k: http[k] for k in ("host", "port") if k in http}
        return out

    def deploy(self, config: dict) -> None:
        r = self._request("PUT", "/api/serve/applications/", json=config)
        if r.status_code != 200:
            raise RuntimeError(f"deploy failed ({r.status_code}): {r.text[:500]}")

    def gateway_url(self, app_name: str = APP_NAME) -> str:
        d = self.details()
        http = d.get("http_options") or {}
        host = http.get("host", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - maps bind-all to loopback for our own client
        prefix = ((d.get("applications") or {}).get(app_name, {}).get("route_prefix") or "/").rstrip("/")
        return f"http://{host}:{http.get('port', 8000)}{prefix}"

    def models(self, app_name: str = APP_NAME) -> dict:
        url = f"{self.gateway_url(app_name)}/v1/models"
        r = requests.get(url, headers=self.api_headers, timeout=self.timeout)
        if r.status_code in (401, 403):
            from finpulse.serving.api_keys import ENV_CLIENT_KEY, client_key_file

            raise ApiKeyRefused(f"the FinPulse API at {url} refused {'the' if self.api_headers else 'a missing'} API "
                                f"key ({r.status_code}: {_detail(r)}): set {ENV_CLIENT_KEY} to a key with "
                                f"the read scope (`finpulse keys create`) or put it in {client_key_file()}")
        r.raise_for_status()
        return r.json()

    def wait_for(self, predicate: Any, app_name: str = APP_NAME, timeout: float = 300.0) -> dict:
        """Poll /v1/models until ``predicate(models)`` holds; returns the last answer."""
        deadline, last, err = time.time() + timeout, None, None
        while time.time() < deadline:
            try:
                last = self.models(app_name)
                if predicate(last):
                    return last
            except (requests.RequestException, KeyError) as exc:
                err = exc
            time.sleep(0.5)
        raise TimeoutError(f"condition not reached in {timeout}s; last: {last or err}")


def _detail(r: requests.Response) -> str:
    try:
        return str(r.json().get("detail"))
    except ValueError:
        return r.text[:200]


def _slot(models: dict, model: str, slot: str) -> dict:
    return models["models"][model][slot]


def _wait_loaded(client: ServeConfigClient, model: str, slot: str, spec: str, app_name: str) -> dict:
    def ok(m: dict) -> bool:
        s = _slot(m, model, slot)
        if s.get("failed_spec") == spec:
            raise RuntimeError(f"{model} {slot} failed to load {spec!r}: {s['error']}")
        return s.get("spec") == spec and bool(s.get("ready"))

    return client.wait_for(ok, app_name)


def set_canary(client: ServeConfigClient, model: str, version: str, weight: float, app_name: str = APP_NAME) -> dict:
    """Load ``version`` into the canary slot, wait until it serves, then send it ``weight`` of traffic.

    A ``name@alias`` spec is pinned to the version behind the alias now (``name/N``): that version is
    what a later promotion makes champion."""
    from finpulse.serving.champion import pin_spec

    version = pin_spec(version)
    cfg = client.current_config()
    if user_config(cfg, DEPLOYMENT_NAMES[(model, "canary")], app_name).get("model") != version:
        client.deploy(with_weight(with_canary_model(cfg, model, version, app_name), model, 0.0, app_name))
    _wait_loaded(client, model, "canary", version, app_name)
    client.deploy(with_weight(client.current_config(), model, weight, app_name))
    return client.wait_for(lambda m: m["models"][model]["weights"]["canary"] == weight, app_name)


def canary_spec(client: ServeConfigClient, model: str, app_name: str = APP_NAME) -> str | None:
    """The spec the canary slot is configured with (None: no canary)."""
    return user_config(client.current_config(), DEPLOYMENT_NAMES[(model, "canary")], app_name).get("model")


def promote(client: ServeConfigClient, model: str, app_name: str = APP_NAME, *, registry: bool = True,
            actor: str | None = None, reason: str = "", parent_run_id: str | None = None) -> dict:
    """The canary's version becomes stable AND the registry's champion, recorded in MLflow.

    Serving moves first (the stable slot loads ``name/N`` in place, then the canary slot empties); only
    once it serves is ``name@champion`` moved, so a version that fails to load never becomes champion.
    A canary from a plain folder is refused (ValueError) unless ``registry=False``, which moves serving
    only and records that the alias stayed. Returns /v1/models plus ``promotion`` (what was recorded)."""
    from finpulse.serving import champion

    cfg = client.current_config()
    spec = user_config(cfg, DEPLOYMENT_NAMES[(model, "canary")], app_name).get("model")
    if not spec:
        raise LookupError(f"no {model} canary to promote")
    ref = champion.registry_version(spec) if registry else None
    if registry and ref is None:
        raise ValueError(champion.not_in_registry(model, spec))
    stable_spec = f"{ref[0]}/{ref[1]}" if ref else spec
    client.deploy(with_stable_model(cfg, model, stable_spec, app_name))
    _wait_loaded(client, model, "stable", stable_spec, app_name)
    out = _clear_canary(client, model, app_name)
    if ref is None:
        run_id = champion.record("promote", model, spec=spec, actor=actor, reason=reason, parent_run_id=parent_run_id,
                                 details={"registry_moved": False})
        return {**out, "promotion": {"registry_moved": False, "spec": spec, "run_id": run_id}}
    try:
        promotion = champion.move_champion(model, ref[0], ref[1], actor=actor, reason=reason,
                                           parent_run_id=parent_run_id)
    except Exception as exc:
        raise RuntimeError(f"serving now runs {stable_spec} but the champion alias could not be moved "
                           f"({type(exc).__name__}: {exc}); a restart would serve the old champion") from exc
    return {**out, "promotion": promotion}


def _clear_canary(client: ServeConfigClient, model: str, app_name: str) -> dict:
    cfg = with_weight(client.current_config(), model, 0.0, app_name)
    client.deploy(with_canary_model(cfg, model, None, app_name))
    return client.wait_for(lambda m: m["models"][model]["weights"]["canary"] == 0.0
                           and not _slot(m, model, "canary").get("ready"), app_name)


def rollback(client: ServeConfigClient, model: str, app_name: str = APP_NAME, *, actor: str | None = None,
             reason: str = "", parent_run_id: str | None = None) -> dict:
    """All traffic back to stable; the canary slot unloads its model. The registry is left as it is
    (the champion never moved); the rollback is recorded in MLflow with its reason when it can be."""
    from finpulse.serving import champion

    spec = canary_spec(client, model, app_name)
    out = _clear_canary(client, model, app_name)
    if spec:
        run_id = champion.record("rollback", model, spec=spec, actor=actor, reason=reason,
                                 parent_run_id=parent_run_id)
        out = {**out, "rollback": {"spec": spec, "reason": reason, "run_id": run_id}}
    return out


def summary(models: dict) -> dict:
    """Per model: stable/canary versions and weights (what `finpulse canary status` prints)."""
    out = {}
    for model, m in models["models"].items():
        out[model] = {slot: {"version": m[slot].get("version"), "weight": m["weights"][slot],
                             "ready": m[slot].get("ready"), "error": m[slot].get("error")}
                      for slot in ("stable", "canary")}
    return out
