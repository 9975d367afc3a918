"""The registry side of promotion on a real sqlite MLflow: which registry version a spec names, pinning
an alias at canary time, moving champion with a recorded event; and the freshness gauges' inputs."""

from __future__ import annotations

import json
import os
import time

import pytest

from finpulse import storage, tracking
from finpulse.serving import champion
from finpulse.serving.gauges import FreshnessGauges, drift_latest_uri, model_created_at, read_drift
from finpulse.serving.slots import ModelSlot
from tests.support.serving import build_test_models


@pytest.fixture()
def registry(finpulse_home, tmp_path):
    models = build_test_models(tmp_path / "models", tickers=("AAPL",))
    for folder, alias in ((models["fc_a"], tracking.CHAMPION), (models["fc_b"], tracking.CHALLENGER)):
        with tracking.start_run(tracking.FORECAST_EXPERIMENT, "train"):
            tracking.log_model_dir(folder, registered_model_name=tracking.FORECAST_MODEL, alias=alias)
    return models


def test_registry_version_of_each_spec_kind(registry):
    name = tracking.FORECAST_MODEL
    assert champion.registry_version(f"{name}/3") == (name, "3")
    assert champion.registry_version(f"models:/{name}/4") == (name, "4")
    assert champion.registry_version(f"{name}@challenger") == (name, "2")
    assert champion.registry_version(registry["fc_a"]) is None  # a folder
    assert champion.registry_version("runs:/abc/model") is None
    assert champion.registry_version(None) is None
    assert champion.pin_spec(f"{name}@challenger") == f"{name}/2"
    assert champion.pin_spec(registry["fc_b"]) == registry["fc_b"]
    with pytest.raises(LookupError):
        champion.pin_spec(f"{name}@nosuchalias")
    assert "--no-registry" in champion.not_in_registry("forecast", registry["fc_b"])


def test_move_champion_records_who_what_when_and_the_previous(registry):
    out = champion.move_champion("forecast", tracking.FORECAST_MODEL, "2", actor="soak-test", reason="clean soak")
    assert tracking.get_version(tracking.FORECAST_MODEL, tracking.CHAMPION).version == "2"
    assert out["previous_champion"] == "1" and out["run_id"]
    params = tracking.run_params(out["run_id"])
    assert params["action"] == "promote" and params["actor"] == "soak-test" and params["reason"] == "clean soak"
    assert params["previous_champion"] == "1" and params["version"] == "2" and params["at"].startswith("20")
    tags = tracking.run_tags(out["run_id"])
    assert tags["finpulse.serving.spec"] == f"{tracking.FORECAST_MODEL}/2"
    rid = champion.record("rollback", "forecast", spec="x/3", actor=None, reason="p99 x3")
    assert "@" in tracking.run_params(rid)["actor"] and tracking.run_params(rid)["reason"] == "p99 x3"


def test_model_age_and_drift_gauges(registry, finpulse_home):
    created = model_created_at(None, f"{tracking.FORECAST_MODEL}/v1", f"{tracking.FORECAST_MODEL}@champion")
    assert created is not None and abs(time.time() - created) < 300
    os.utime(registry["fc_a"], (1_600_000_000, 1_600_000_000))
    assert model_created_at(None, "fc-a", registry["fc_a"]) == 1_600_000_000
    assert model_created_at(type("M", (), {"meta": {"extra": {"created_at": "2026-01-02T00:00:00+00:00"}}})(),
                            "local", None) == 1767312000.0

    class Recorder:
        def __init__(self):
            self.ages, self.drifts = [], []

        def model_age(self, model, slot, seconds):
            self.ages.append((model, slot, seconds))

        def drift(self, scores, alarm):
            self.drifts.append((list(scores), alarm))

    slot = ModelSlot("forecast")
    assert slot.load(registry["fc_a"], "finpulse.forecast.model:load_forecaster")
    rec = Recorder()
    gauges = FreshnessGauges(rec, "forecast", "stable", drift=True)
    assert read_drift(drift_latest_uri()) is None
    gauges.refresh(slot, now=1_600_000_100)
    assert rec.ages == [("forecast", "stable", 100.0)] and rec.drifts == []  # no report yet: no drift gauges
    report = {"created_at": "2026-12-01T00:00:00+00:00", "alarm": True, "reference_model": "finpulse-forecaster/v1",
              "gauges": [{"signal": "psi", "feature": "ret_1d", "score": 0.31}]}
    storage.write_json(drift_latest_uri(), report)
    assert json.loads(storage.read_bytes(drift_latest_uri()))["alarm"] is True
    gauges.refresh(slot, now=1_600_000_101)  # throttled: within REFRESH_S of the last export
    assert len(rec.ages) == 1
    gauges.refresh(slot, now=1_600_000_200)
    assert rec.ages[-1] == ("forecast", "stable", 200.0) and rec.drifts == [([("psi", "ret_1d", 0.31)], True)]
