"""Storage faults with real servers (issue 14): SeaweedFS S3 killed mid-ETL, the MLflow server killed
mid-training and mid-registration. Each test starts and kills its own server; the scenarios are in
benchmarks/_storage_faults.py, whose figures `make bench-reliability` reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._storage_faults import mlflow_outage_during_training, s3_outage_during_etl

pytestmark = pytest.mark.integration


def _one_clear_line(error: str, names: str) -> None:
    assert names in error and "unreachable while" in error, error
    assert "\n" not in error and len(error) < 600, error  # not a worker's traceback


def test_s3_killed_mid_etl_fails_clearly_keeps_latest_and_reruns_to_the_same_version(ray_head: dict,
                                                                                      tmp_path: Path) -> None:
    r = s3_outage_during_etl(tmp_path)
    errors = r["s3_outage_errors"]
    for error in errors.values():
        _one_clear_line(error, "S3 endpoint http://127.0.0.1:")
    assert "(stages done: prices)" in errors["in_a_ray_data_task"]
    assert "(stages done: prices, posts_to_staging)" in errors["after_posts_staged"]
    assert r["s3_outage_failed_in_ray_task"] == {"in_a_ray_data_task": True, "after_posts_staged": False}
    assert r["s3_outage_error_names_endpoint"]
    # bounded retries: seconds, not Ray Data's ten attempts with up to 32 s of backoff each
    assert r["s3_outage_error_s"] < 20, r["s3_outage_error_s_by_fault"]
    assert r["s3_latest_untouched"] and r["s3_previous_version_readable"]
    # the second fault left half a version on S3 (staged posts), and no reader can see it
    assert r["s3_half_written_files"] > 0 and not r["s3_half_written_visible"]
    # back on the same data folder: the rerun is the clean run's version, byte for byte, nothing extra
    assert r["s3_rerun_idempotent"]


def test_mlflow_killed_mid_training_then_mid_registration(ray_head: dict, tmp_path: Path) -> None:
    r = mlflow_outage_during_training(tmp_path)
    # down from the end of epoch 1 to the end of epoch 3: training went on, the driver logged the epochs
    # rank 0 could not, each exactly once, and registered the model with its alias
    assert r["mlflow_training_completed"] and r["mlflow_epochs_logged_late"] >= 2
    assert r["mlflow_metrics_complete"] and r["mlflow_alias_on_trained_version"]
    # killed between creating the version and moving the alias: one line naming the tracking URI, in seconds
    _one_clear_line(r["mlflow_outage_error"], "MLflow tracking server http://127.0.0.1:")
    assert r["mlflow_outage_error_names_uri"] and r["mlflow_outage_error_s"] < 20
    # after the restart the half-registered version is marked pending, the alias never moved to it,
    # and the sweep deleted it: every version left is whole
    assert len(r["mlflow_pending_after_restart"]) == 1 and not r["mlflow_pending_held_an_alias"]
    assert r["mlflow_alias_unmoved"]
    assert r["mlflow_swept"]["deleted"] == r["mlflow_pending_after_restart"]
    assert r["mlflow_half_registered_versions"] == 0
