"""Settings resolve every local location to an absolute path once: Ray Train V2 runs workers in the
run's storage folder and `ray job submit --working-dir` runs drivers in a temporary folder, so a
relative path (the old `.finpulse` default) named a different, empty MLflow database there."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from finpulse.config import Settings, absolute_sqlite, default_home, settings_env


@pytest.fixture()
def no_finpulse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FINPULSE_HOME", "FINPULSE_DATA_ROOT", "FINPULSE_MLFLOW_TRACKING_URI",
                "FINPULSE_MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(var, raising=False)


def test_relative_home_becomes_absolute_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   no_finpulse_env: None) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings(home=".finpulse")
    assert s.home == str(tmp_path / ".finpulse")
    assert s.data_root == str(tmp_path / ".finpulse" / "data")
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path}/.finpulse/mlflow.db"
    assert s.mlflow_artifact_location == str(tmp_path / ".finpulse" / "mlartifacts")
    # what workers receive does not depend on their working folder
    env = settings_env(s)
    monkeypatch.chdir("/")
    monkeypatch.setenv("FINPULSE_HOME", env["FINPULSE_HOME"])
    assert Settings().mlflow_tracking_uri == s.mlflow_tracking_uri


def test_uris_are_left_alone(no_finpulse_env: None) -> None:
    s = Settings(home="/srv/fp", data_root="s3://bucket/prefix", mlflow_tracking_uri="http://mlflow:5000")
    assert s.data_root == "s3://bucket/prefix"
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert s.mlflow_artifact_location is None  # a tracking server keeps its own artifact root
    assert absolute_sqlite("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_sqlite("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


def test_default_home_is_the_checkouts_or_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    no_finpulse_env: None) -> None:
    checkout = tmp_path / "finpulse-checkout"
    (checkout / ".venv").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "finpulse"\n')
    monkeypatch.setattr(sys, "prefix", str(checkout / ".venv"))
    monkeypatch.chdir(tmp_path)  # the working folder plays no part
    assert default_home() == str(checkout / ".finpulse")
    assert Settings().home == str(checkout / ".finpulse")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere" / "venv"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_home() == str(tmp_path / "user" / ".finpulse")


def test_settings_env_never_carries_credentials(no_finpulse_env: None) -> None:
    env = settings_env(Settings(home="/srv/fp", s3_access_key="AKIA-test", s3_secret_key="shh"))
    assert env["FINPULSE_HOME"] == "/srv/fp"
    assert not any(v in ("AKIA-test", "shh") for v in env.values())
