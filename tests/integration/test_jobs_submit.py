"""Every job in jobs/ through `ray job submit`, as a user submits them: a clean environment, a cluster
started from the venv, `--working-dir .`, and the FinPulse home named in the job's runtime env.

The chain is the product's batch path: ETL -> fine-tune sentiment -> score -> ETL with model scores ->
train the forecaster -> evaluate -> promote, and a tiny Tune sweep of each model from a sweep file. Each job's MLflow runs must land
in the named (absolute) home, not in the job's temporary working folder: a relative MLflow path
once failed here with `Run ... not found` because Ray Train runs workers in another folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = sorted(p.name for p in (REPO / "jobs").glob("*.py"))


def submit(dashboard: str, home: Path, *args: str) -> str:
    """`ray job submit` from a process with only PATH, HOME and the cluster's address set."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "RAY_ADDRESS": dashboard}
    runtime_env = {"excludes": [".venv", ".git", ".finpulse", "benchmarks/results", "tests"],
                   "env_vars": {"FINPULSE_HOME": str(home)}}
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps(runtime_env), "--", "python", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0 and "succeeded" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_every_job_submits_and_records_to_the_named_home(ray_head: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "jobs-home"
    d = ray_head["dashboard"]
    ran = ["etl.py"]
    submit(d, home, "jobs/etl.py", "--embedded")
    ran.append("train_sentiment.py")
    submit(d, home, "jobs/train_sentiment.py", "--dataset", "vader_synthetic", "--epochs", "1",
           "--config", json.dumps({"max_train_examples": 64, "max_length": 32, "batch_size": 16}))
    ran.append("score_sentiment.py")
    submit(d, home, "jobs/score_sentiment.py", "--model", "finpulse-sentiment@challenger")
    submit(d, home, "jobs/etl.py", "--scores", str(home / "data" / "scores"))
    small = json.dumps({"max_epochs": 2, "hidden_size": 8, "lookback": 5})
    ran.append("train_forecaster.py")
    submit(d, home, "jobs/train_forecaster.py", "--num-workers", "2", "--config", small)
    # Independent jobs at once, as users run them (and a third of this test's wall time): the evaluate ->
    # promote chain next to both sweeps, all writing to the same home's MLflow.
    ran += ["evaluate.py", "promote.py", "tune.py"]
    lstm, sentiment = tmp_path / "lstm.yaml", tmp_path / "sentiment.yaml"
    lstm.write_text(json.dumps({  # JSON is YAML: tiny sweep files, as a researcher writes them
        "model": "forecaster", "metric": "val_loss", "mode": "min", "params": {"lr": {"loguniform": [1e-3, 3e-3]}},
        "base": {"hidden_size": 8, "lookback": 5}, "budget": {"samples": 2, "max_concurrent": 2, "max_epochs": 2}}))
    sentiment.write_text(json.dumps({
        "model": "sentiment", "metric": "val_macro_f1", "mode": "max",
        "params": {"learning_rate": {"loguniform": [5e-5, 2e-4]}},
        "base": {"epochs": 1, "max_length": 32, "batch_size": 16}, "options": {"max_examples": 60},
        "budget": {"samples": 2, "max_concurrent": 1}, "search": "tpe"}))
    with ThreadPoolExecutor(3) as pool:
        chain = pool.submit(lambda: (submit(d, home, "jobs/evaluate.py", "--k", "1"),
                                     submit(d, home, "jobs/promote.py"))[1])
        sweeps = [pool.submit(submit, d, home, "jobs/tune.py", "--space", str(lstm), "--name", "lstm"),
                  pool.submit(submit, d, home, "jobs/tune.py", "--space", str(sentiment), "--name", "minilm")]
        out = chain.result()
        for sweep in sweeps:
            sweep.result()
    assert sorted(ran) == JOBS, "a job in jobs/ is not submitted by this test"

    # everything landed in the named home: the ETL's versions, MLflow's runs and registry
    monkeypatch.setenv("FINPULSE_HOME", str(home))
    for var in ("FINPULSE_DATA_ROOT", "FINPULSE_MLFLOW_TRACKING_URI", "FINPULSE_MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(var, raising=False)
    from mlflow import MlflowClient

    from finpulse import tracking
    from finpulse.config import get_settings
    from finpulse.data.catalog import load_manifest

    get_settings.cache_clear()
    try:
        assert load_manifest(str(home / "data" / "curated"))["sentiment_source"].startswith("finpulse-sentiment/")
        tracking.configure()
        client = MlflowClient()
        runs = {e.name: len(client.search_runs([e.experiment_id])) for e in client.search_experiments()}
        assert runs.get("finpulse-forecast", 0) >= 6, runs  # train, evaluate, sweep, 2 trials, retrain
        assert runs.get("finpulse-sentiment", 0) >= 5, runs  # train, sweep, 2 trials, retrain
        assert (home / "ray_results" / "lstm" / "sweep.json").is_file()  # each sweep under the Ray storage path
        assert tracking.get_version("finpulse-forecaster", tracking.CHALLENGER) is not None
        assert tracking.get_version("finpulse-sentiment", tracking.CHALLENGER) is not None
        decision = json.loads(out[out.index("{"):out.rindex("}") + 1])
        champion = tracking.get_version("finpulse-forecaster", tracking.CHAMPION)
        assert (champion is not None) == bool(decision["promote"]), decision
    finally:
        get_settings.cache_clear()
