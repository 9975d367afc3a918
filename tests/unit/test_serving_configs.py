"""Serve configs validate against Serve's own schema; canary edits touch only user_configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from finpulse.serving import canary
from finpulse.serving.app import DEPLOYMENT_NAMES, AppArgs, build_app, default_user_configs
from finpulse.serving.schemas import GatewayConfig

CONFIGS = Path(__file__).resolve().parents[2] / "serve_configs"


@pytest.mark.parametrize("name", ["local.yaml", "production.yaml"])
def test_serve_configs_validate(name):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "finpulse.serving.app:build_app"
    AppArgs(**app.args)  # the builder accepts the args
    names = {d.name for d in app.deployments}
    assert names == set(DEPLOYMENT_NAMES.values()) | {"Gateway"}
    if name == "local.yaml":  # fits 2 cores with room for Ray itself
        assert sum(d.ray_actor_options.num_cpus * d.num_replicas for d in app.deployments) <= 1.5
    else:
        deps = {d.name: d for d in app.deployments}
        assert deps["SentimentModel"].ray_actor_options.num_gpus == 1
        for d in app.deployments:
            auto = dict(d.autoscaling_config)
            assert auto["min_replicas"] >= 1 and auto["max_replicas"] > auto["min_replicas"]
            assert auto["target_ongoing_requests"] > 0
        assert deps["Gateway"].user_config["weights"] == {"sentiment": 0.1, "forecast": 0.1}
        limit = GatewayConfig(**deps["Gateway"].user_config).rate_limit  # per API key and Gateway replica
        assert (limit.rate_per_s, limit.burst) == (50, 100)


def test_build_app_binds_the_graph_with_user_configs(tmp_path):
    app = build_app({"sentiment_model": "s@champion", "forecast_model": str(tmp_path), "features_uri": "rel/dir"})
    assert app is not None
    uc = default_user_configs(AppArgs(sentiment_model="s@champion", forecast_model=str(tmp_path),
                                      features_uri="rel/dir"))
    assert uc["SentimentModel"]["model"] == "s@champion" and uc["SentimentModelCanary"]["model"] is None
    assert uc["Forecaster"]["features_uri"].startswith("/")  # made absolute for replicas elsewhere
    assert uc["Gateway"]["weights"] == {"sentiment": 0.0, "forecast": 0.0}
    with pytest.raises(ValueError):
        AppArgs(unknown=1)


def test_canary_edits_only_touch_user_configs():
    cfg = {"applications": [{"name": "finpulse", "import_path": "x:y", "deployments": [
        {"name": "Gateway", "ray_actor_options": {"num_cpus": 0.25}, "user_config": {"weights": {"forecast": 0.0}}},
        {"name": "ForecasterCanary", "user_config": {"model": None, "features_uri": "/f"}}]}]}
    out = canary.with_weight(canary.with_canary_model(cfg, "forecast", "fc@challenger"), "forecast", 0.1)
    assert canary.user_config(out, "Gateway")["weights"]["forecast"] == 0.1
    assert canary.user_config(out, "ForecasterCanary") == {"model": "fc@challenger", "features_uri": "/f"}
    assert out["applications"][0]["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.25}
    assert canary.user_config(cfg, "Gateway")["weights"]["forecast"] == 0.0  # input not mutated
    promoted = canary.with_stable_model(out, "forecast", "fc@challenger")
    assert canary.user_config(promoted, "Forecaster")["model"] == "fc@challenger"
    with pytest.raises(ValueError):
        canary.with_weight(cfg, "forecast", 1.5)
    ServeDeploySchema.model_validate(out)


def test_finpulse_serve_resolves_settings_for_replicas(monkeypatch, tmp_path):
    from finpulse.config import get_settings
    from finpulse.serving.launch import resolve_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINPULSE_DATA_ROOT", "rel/data")
    monkeypatch.setenv("FINPULSE_MLFLOW_TRACKING_URI", "sqlite:///rel/mlflow.db")
    get_settings.cache_clear()
    try:
        cfg = resolve_config(CONFIGS / "local.yaml", port=18123)
    finally:
        get_settings.cache_clear()
    env = cfg["applications"][0]["runtime_env"]["env_vars"]
    assert env["FINPULSE_DATA_ROOT"] == str(tmp_path / "rel" / "data")
    assert env["FINPULSE_MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/rel/mlflow.db"
    assert cfg["http_options"]["port"] == 18123
    ServeDeploySchema.model_validate(cfg)
