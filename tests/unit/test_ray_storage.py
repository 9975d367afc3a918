"""Where Ray Train and Tune write (``FINPULSE_RAY_STORAGE_PATH``), resolved in one place: a local folder
made absolute, or S3 with FinPulse's endpoint and keys in the filesystem that travels to every worker."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from finpulse.config import Settings, settings_env
from finpulse.outages import ServiceUnreachable
from finpulse.storage import ray_storage


@pytest.fixture(autouse=True)
def no_storage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FINPULSE_HOME", "FINPULSE_RAY_STORAGE_PATH", "FINPULSE_S3_ENDPOINT_URL", "FINPULSE_S3_ACCESS_KEY",
                "FINPULSE_S3_SECRET_KEY", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)


def _shipped_state(fs: pafs.FileSystem) -> dict:
    """What pickling sends to Ray Train's controller and workers (they rebuild the filesystem from it)."""
    return fs.__reduce__()[1][0]


def test_default_is_ray_results_under_the_home_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings(home="fp")  # relative: Ray Train V2 would read it in the run's folder
    assert s.ray_storage_path == str(tmp_path / "fp" / "ray_results")
    store = ray_storage(settings=s)
    assert (store.uri, store.storage_path, store.filesystem) == (s.ray_storage_path,) * 2 + (None,)
    assert store.run_config_args() == {"storage_path": s.ray_storage_path, "storage_filesystem": None}
    # a relative setting or override is made absolute too, and workers receive the resolved value
    assert Settings(home="/srv/fp", ray_storage_path="ckpt").ray_storage_path == str(tmp_path / "ckpt")
    assert ray_storage("elsewhere", s).storage_path == str(tmp_path / "elsewhere")
    assert settings_env(s)["FINPULSE_RAY_STORAGE_PATH"] == str(tmp_path / "fp" / "ray_results")


def test_s3_gets_a_filesystem_with_the_endpoint_path_style_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINPULSE_RAY_STORAGE_PATH", "s3://finpulse/ray_results/")
    s = Settings(home="/srv/fp", s3_endpoint_url="http://seaweedfs:8333", s3_access_key="K", s3_secret_key="S",
                 s3_region="eu-west-1")
    store = ray_storage(settings=s)
    assert store.uri == "s3://finpulse/ray_results/"
    assert store.storage_path == "finpulse/ray_results"  # RunConfig wants the prefix stripped with a filesystem
    assert isinstance(store.filesystem, pafs.S3FileSystem)
    state = _shipped_state(store.filesystem)
    assert (state["scheme"], state["endpoint_override"]) == ("http", "seaweedfs:8333")
    assert state["force_virtual_addressing"] is False  # path-style: bucket.seaweedfs would not resolve
    assert (state["access_key"], state["secret_key"], state["region"]) == ("K", "S", "eu-west-1")
    assert store.run_config_args() == {"storage_path": "finpulse/ray_results", "storage_filesystem": store.filesystem}
    assert ray_storage("s3://other/x", s).storage_path == "other/x"  # an override goes the same way


@pytest.mark.parametrize("bad", ["gs://bucket/ray", "hdfs://nn/ray", "s3://"])
def test_other_schemes_and_a_missing_bucket_are_refused_clearly(bad: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix") as err:
        ray_storage(bad, Settings(home="/srv/fp"))
    assert bad in str(err.value)


def test_a_dead_s3_endpoint_during_fit_is_one_clear_error() -> None:
    from tests.support.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: what a killed SeaweedFS leaves
    store = ray_storage("s3://finpulse/ray_results", Settings(home="/srv/fp", s3_endpoint_url=dead))
    with pytest.raises(ServiceUnreachable, match="training the forecaster") as err, store.reaching("training the forecaster"):
        raise OSError("When uploading checkpoint: curlCode: 7, Couldn't connect to server")
    assert err.value.endpoint == dead and "s3://finpulse/ray_results" in str(err.value)
    with pytest.raises(OSError, match="disk full"), ray_storage("/srv/fp/r", Settings(home="/srv/fp")).reaching("x"):
        raise OSError("disk full")  # a local path: the error passes unchanged


def test_no_trainer_or_search_picks_its_own_results_folder() -> None:
    """The default lives in config.py alone; trainers and sweeps ask storage.ray_storage."""
    package = Path(__file__).resolve().parents[2] / "finpulse"
    spelled = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "ray_results" in p.read_text())
    assert spelled == ["config.py"]
