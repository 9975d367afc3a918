"""Storage faults with real servers, each a scenario that returns its figures (issue 14).

- :func:`s3_outage_during_etl`: a SeaweedFS S3 that the scenario starts itself is killed mid-ETL, twice
  (at the first staging write of a Ray Data task, exactly: a proxy in front of it trips on that request;
  and when the posts stage has staged its output, so half a version is on S3 and the driver finds it gone). Each run must fail with one error naming the
  endpoint, in seconds; the previous version must stay readable and ``LATEST`` untouched; after S3 is
  back on the same data folder, rerunning must give what a clean run gives (same version, same bytes,
  no extra files).
- :func:`mlflow_outage_during_training`: an MLflow server is killed while the forecaster trains on Ray
  (training goes on; the epochs rank 0 could not log are logged after training, each once), then killed
  between creating a model version and moving its alias (one error naming the tracking URI; after a
  restart the half-registered version is marked pending, the alias never moved, and the sweep removes it).

The integration tests (tests/integration/test_storage_faults.py) assert on these results. (Run from
``make bench-reliability`` after its app was deployed, the S3 scenario's ETL hung; the benchmark leaves them out.) Both need a connected
Ray (a test's ``ray_head``; ``finpulse.runtime.connect()`` in a benchmark) and take a scratch folder.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finpulse import outages, storage, tracking
from finpulse.config import get_settings
from finpulse.data import catalog, etl, reference, synthetic
from finpulse.resources import load_prices
from tests.support.faults import ServerOutage
from tests.support.servers import Server, Tripwire, mlflow_server, seaweedfs

TICKERS = ["AAPL", "MSFT"]
RAW, CURATED = "s3://finpulse-raw", "s3://finpulse-curated"


@contextmanager
def _env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables and re-read settings; restore both after."""
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in before.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        get_settings.cache_clear()


# ------------------------------------------------------------------------------------------ S3 outage


def _stage_inputs(root: str, seed: int) -> tuple[str, str]:
    """A small raw corpus under ``root`` (two tickers, one year, two post files); returns (prices, posts)."""
    prices = load_prices(TICKERS)
    prices = prices[prices["date"].astype(str) >= "2019-01-01"]
    reference.write_prices_csv(prices, storage.join(root, "prices"))
    posts = synthetic.generate_posts(prices, seed=seed, posts_per_day=2)
    for i in range(2):
        part = posts.iloc[i * len(posts) // 2:(i + 1) * len(posts) // 2]
        storage.write_bytes(storage.join(root, "posts", f"part-{i}.csv"), synthetic.to_posts_csv(part, seed=i))
    return storage.join(root, "prices"), storage.join(root, "posts")


def _version_files(out: str, version: str) -> dict[str, str]:
    """Every file of a version folder (relative path -> sha256); the manifest's hash is left out (it records
    when and how long), its presence is not."""
    base = storage.join(out, f"v={version}")
    return {f[len(base) + 1:]: "" if f.endswith("/manifest.json") else hashlib.sha256(storage.read_bytes(f)).hexdigest()
            for f in storage.list_files(base)}


# Where S3 dies: at the first staging write of a Ray Data task (the write path Ray Data itself retries),
# or in the driver once the posts stage has staged its output (half a version on S3).
FAULTS = {"in_a_ray_data_task": (b"_staging/_part", None), "after_posts_staged": (None, "posts_to_staging")}


def _etl_killed(server: Server, wire: Tripwire, inputs: tuple[str, str], out: str, fault: str) -> dict[str, Any]:
    """Run the ETL and kill S3 where ``fault`` says; the run must fail with ServiceUnreachable."""
    pattern, stage = FAULTS[fault]
    wire.arm(pattern, server.kill)

    def hook(done: str) -> None:
        if done == stage:
            wire.trip()

    try:
        etl.run_etl(*inputs, out, on_stage=hook)
    except outages.ServiceUnreachable as exc:
        failed = time.time()
        if wire.tripped_at is None:
            raise RuntimeError(f"the ETL failed before the fault: {exc}") from exc
        return {"error": str(exc), "error_s": round(failed - wire.tripped_at, 2),
                "in_ray_task": "RayTaskError" in repr(exc.__cause__), "names_endpoint": wire.url in str(exc)}
    raise AssertionError(f"the ETL finished although S3 was killed ({fault})")


def s3_outage_during_etl(work: Path) -> dict[str, Any]:
    """S3 killed mid-ETL (twice), then back: see the module docstring. ``work``: a scratch folder."""
    server = seaweedfs(work / "seaweed")
    server.start()
    wire = Tripwire(server)  # FinPulse talks to S3 through it: it kills the server at an exact request
    wire.start()
    try:
        with _env({"FINPULSE_S3_ENDPOINT_URL": wire.url, "FINPULSE_S3_ACCESS_KEY": "finpulse-test",
                   "FINPULSE_S3_SECRET_KEY": "finpulse-test-secret"}):  # pragma: allowlist secret - throwaway test identity
            return _s3_scenario(server, wire)
    finally:
        wire.stop()
        server.stop()


def _s3_scenario(server: Server, wire: Tripwire) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="finpulse-test",
                      aws_secret_access_key="finpulse-test-secret", region_name="us-east-1")  # noqa: S106 # pragma: allowlist secret - the throwaway SeaweedFS identity
    for bucket in (RAW, CURATED):
        s3.create_bucket(Bucket=bucket[len("s3://"):])
    previous_inputs, inputs = _stage_inputs(f"{RAW}/a", seed=1), _stage_inputs(f"{RAW}/b", seed=2)
    out = f"{CURATED}/out"
    previous = etl.run_etl(*previous_inputs, out)
    clean = etl.run_etl(*inputs, f"{CURATED}/clean")  # what a run that meets no fault writes
    faults = {}
    for fault in FAULTS:
        faults[fault] = _etl_killed(server, wire, inputs, out, fault)
        restart_s = server.start()  # same data folder, same ports
        wire.start()
    half_written = storage.list_files(storage.join(out, f"v={clean.version}"))
    unchanged = catalog.latest_version(out) == previous.version
    readable = len(catalog.load_dataset(out, "daily_features")) == previous.manifest["feature_rows"]
    t0 = time.time()
    rerun = etl.run_etl(*inputs, out)
    rerun_s = time.time() - t0
    same = rerun.version == clean.version and _version_files(out, rerun.version) == _version_files(
        f"{CURATED}/clean", clean.version)
    return {
        "s3_outage_error_s": max(f["error_s"] for f in faults.values()),
        "s3_outage_error_s_by_fault": {k: f["error_s"] for k, f in faults.items()},
        "s3_outage_failed_in_ray_task": {k: f["in_ray_task"] for k, f in faults.items()},
        "s3_outage_errors": {k: f["error"] for k, f in faults.items()},
        "s3_outage_error_names_endpoint": all(f["names_endpoint"] for f in faults.values()),
        "s3_latest_untouched": unchanged,
        "s3_previous_version_readable": readable,
        "s3_half_written_files": len(half_written),
        "s3_half_written_visible": any(f.endswith("/manifest.json") for f in half_written),
        "s3_restart_s": round(restart_s, 2),
        "s3_rerun_s": round(rerun_s, 2),
        "s3_clean_run_s": clean.manifest["seconds"],
        "s3_rerun_idempotent": same and catalog.latest_version(out) == rerun.version,
    }


# ------------------------------------------------------------------------------------------ MLflow outage


def mlflow_outage_during_training(work: Path) -> dict[str, Any]:
    """MLflow killed during Ray Train training, then during registration: see the module docstring."""
    server = mlflow_server(work / "mlflow")
    start_s = server.start()
    try:
        with _env({"FINPULSE_HOME": str(work / "home"), "FINPULSE_MLFLOW_TRACKING_URI": server.url,
                   "FINPULSE_MLFLOW_ARTIFACT_LOCATION": None, "FINPULSE_DATA_ROOT": None}):
            trained = _training_outage(server, work)
            return {"mlflow_start_s": round(start_s, 2), **trained, **_registration_outage(server, trained)}
    finally:
        server.stop()


def _small_training() -> tuple[Any, Any]:
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.inputs import synthetic_features

    features = synthetic_features(TICKERS, start="2018-01-01", end="2020-01-01", signal_strength=1.0)
    return features, ForecastConfig(hidden_size=8, lookback=10, batch_size=64, tickers=TICKERS, num_workers=1,
                                    max_epochs=6, patience=10)


def _restart_when_asked(server: Server, marker: str, restarts: list[float], stop: threading.Event) -> None:
    """The driver's side of :class:`ServerOutage`: start the server again once the worker asks."""
    while not os.path.exists(f"{marker}.restart"):
        if stop.wait(0.1):
            return
    server.proc.wait(timeout=60)
    restarts.append(server.start())


def _training_outage(server: Server, work: Path) -> dict[str, Any]:
    """Kill MLflow after epoch 1 and bring it back after epoch 3: training must finish, every epoch's
    metrics logged once, the model registered with its alias."""
    from finpulse.forecast.train import TrainOptions, train_forecaster

    features, cfg = _small_training()
    marker, restarts = str(work / "mlflow-outage"), []
    fault = ServerOutage(pid=server.proc.pid, ready_url=server.url + server.ready_path, marker=marker,
                         kill_at=1, back_at=3)
    stop = threading.Event()
    helper = threading.Thread(target=_restart_when_asked, args=(server, marker, restarts, stop), daemon=True)
    helper.start()
    try:
        result = train_forecaster(features, cfg, TrainOptions(on_epoch=fault, max_failures=0))
    finally:
        stop.set()
        helper.join(timeout=180)
    client = tracking.reaching_client(tracking.configure())
    steps = [m.step for m in client.get_metric_history(result.run_id, "train_loss")]  # per epoch only
    tags = client.get_run(result.run_id).data.tags
    challenger = tracking.get_version(tracking.FORECAST_MODEL, tracking.CHALLENGER)
    return {
        "mlflow_restart_s": round(restarts[0], 2) if restarts else None,
        "mlflow_training_completed": client.get_run(result.run_id).info.status == "FINISHED",
        "mlflow_epochs_logged_late": int(tags.get("epochs_logged_after_training", 0)),
        "mlflow_metrics_complete": sorted(steps) == list(range(cfg.max_epochs)),  # each epoch once
        "mlflow_registered_version": result.ref.version if result.ref else None,
        "mlflow_alias_on_trained_version": challenger is not None and challenger.version == result.ref.version,
    }


def _registration_outage(server: Server, trained: dict[str, Any]) -> dict[str, Any]:
    """Kill MLflow right after the model version is created: one clear error; after a restart the version
    is marked pending, the alias has not moved, and the sweep removes it."""
    from finpulse.forecast.train import TrainOptions, train_forecaster

    features, cfg = _small_training()
    killed: list[float] = []

    def hook(step: str) -> None:
        if step == "version_created" and not killed:
            killed.append(server.kill())

    try:
        train_forecaster(features, cfg.model_copy(update={"max_epochs": 2}),
                         TrainOptions(use_ray=False, on_registration=hook))
        raise AssertionError("registration succeeded although MLflow was killed")
    except outages.ServiceUnreachable as exc:
        error, error_s = str(exc), time.time() - killed[0]
    restart_s = server.start()
    name = tracking.FORECAST_MODEL
    pending = tracking.half_registered(name)
    challenger = tracking.get_version(name, tracking.CHALLENGER)
    client = tracking.reaching_client(tracking.configure())
    [run] = client.search_runs([client.get_experiment_by_name(tracking.FORECAST_EXPERIMENT).experiment_id],
                               order_by=["attributes.start_time DESC"], max_results=1)
    swept = tracking.sweep_registrations(name, older_than_s=0)
    left = tracking.half_registered(name)
    for v in tracking.model_versions(name):  # every version left is whole: MLmodel and the model folder
        tracking.verify_version(name, v["version"])
    return {
        "mlflow_outage_error_s": round(error_s, 2),
        "mlflow_outage_error": error,
        "mlflow_outage_error_names_uri": server.url in error,
        "mlflow_restart_after_registration_outage_s": round(restart_s, 2),
        "mlflow_pending_after_restart": [v["version"] for v in pending],
        "mlflow_pending_held_an_alias": any(v["aliases"] for v in pending),
        "mlflow_alias_unmoved": challenger is not None and challenger.version == trained["mlflow_registered_version"],
        "mlflow_swept": swept,
        "mlflow_interrupted_run_status": run.info.status,  # the server could not be told: RUNNING, honestly
        "mlflow_half_registered_versions": len(left),
    }
