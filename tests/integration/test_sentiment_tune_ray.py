"""A sentiment sweep on the session Ray head: ASHA over a tiny BERT, trials as MLflow child runs, the best retrained
with Ray Train and registered as challenger."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from support.tiny_models import build_tiny_model

from finpulse import tracking
from finpulse.sweeps import run_sweep

pytestmark = pytest.mark.integration

WORDS = {"positive": ["profit", "gains", "growth", "soar", "surge", "strong"],
         "negative": ["loss", "crash", "plunge", "weak", "terrible", "miss"]}
SUBJECTS = ["the stock", "shares of the company", "the market", "company report"]
TAILS = ["today", "on the quarter", "in the meeting"]

# The tiny random BERT answers one class for its first two epochs whatever the rate (macro-F1 1/6), so ASHA's
# first rung is at epoch 3 here (the command's default grace period is 1 epoch).
GOOD = {"learning_rate": 3e-3, "max_length": 32, "warmup_ratio": 0.0}
DEAD = {**GOOD, "learning_rate": 1e-7}  # still answers one class at epoch 3: ASHA stops it there
OTHER = {**GOOD, "learning_rate": 2e-3, "max_length": 16, "warmup_ratio": 0.1}


def toy_csv(path) -> str:
    """72 short texts, a third per class, whose label the sentiment word decides."""
    rows = []
    for i, (subj, tail) in enumerate(itertools.product(SUBJECTS, TAILS)):
        rows += [(f"{subj} {WORDS['positive'][i % 6]} {tail}", "positive"),
                 (f"{WORDS['negative'][i % 6]} {subj} {tail}", "negative"),
                 (f"{subj} {tail} held" if i % 2 else f"{tail} {subj}", "neutral")]
        rows += [(f"{WORDS['positive'][(i + 2) % 6]} for {subj} {tail}", "positive"),
                 (f"{subj} {tail} {WORDS['negative'][(i + 3) % 6]}", "negative"),
                 (f"{subj} says {tail}", "neutral")]
    pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text").to_csv(path, index=False)
    return str(path)


def test_tune_sentiment_asha_children_and_best_registered(ray_head, finpulse_home, tmp_path):
    spec = {"model": "sentiment", "metric": "val_macro_f1", "mode": "max",
            "params": {"learning_rate": {"loguniform": [1e-7, 1e-2]}, "max_length": {"choice": [16, 32]},
                       "warmup_ratio": {"uniform": [0.0, 0.2]}},
            "base": {"model": str(build_tiny_model(tmp_path / "base", hidden_size=64)), "patience": 5,
                     "epochs": 6, "batch_size": 4, "dataset": {"kind": "csv", "path": toy_csv(tmp_path / "toy.csv")},
                     "storage_path": str(tmp_path / "ray_results")},
            "options": {"max_examples": None},
            "budget": {"samples": 3, "max_concurrent": 1},
            "scheduler": {"kind": "asha", "grace_period": 3, "reduction_factor": 2},
            "search": {"kind": "random", "points": [GOOD, DEAD, OTHER]}}
    # one trial at a time, GOOD first: DEAD then meets the rung's cutoff (the median of GOOD's and its own
    # macro-F1 at epoch 3), which it is below; with two at a time the order of reports would decide
    result = run_sweep(spec, name="sentiment-asha")
    table = result.leaderboard
    assert len(table) == 3 and set(table["status"]) == {"TERMINATED"}
    # ASHA stopped the trial that learnt nothing at its rung (epoch 3 of 6); the others ran all 6
    dead = table[table["learning_rate"] == DEAD["learning_rate"]].iloc[0]
    assert dead["epochs"] == 3 and sorted(table["epochs"]) == [3, 6, 6], table.to_string()
    assert table["best_val_macro_f1"].iloc[0] > dead["best_val_macro_f1"]
    retrain = result.retrain

    client = MlflowClient()
    children = client.search_runs([tracking.experiment(tracking.SENTIMENT_EXPERIMENT)], filter_string=(
        f"tags.mlflow.parentRunId = '{result.parent_run_id}' and tags.`finpulse.kind` = 'tune-trial'"))
    assert {c.info.run_id for c in children} == set(table["mlflow_run_id"])
    for child in children:
        row = table[table["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert {k: child.data.params[k] for k in GOOD} == {k: str(row[k]) for k in GOOD}
        steps = client.get_metric_history(child.info.run_id, "val_macro_f1")
        assert len(steps) == row["epochs"]
        assert max(s.value for s in steps) == pytest.approx(row["best_val_macro_f1"])
        assert child.info.status == ("KILLED" if row["epochs"] < 6 else "FINISHED")

    # the best trial's configuration is the one retrained (a child of the search) and registered as challenger
    best = table["config"].iloc[0]
    assert result.best_params == best and best in (GOOD, OTHER)
    assert result.registered == "finpulse-sentiment/v1"
    run = client.get_run(retrain["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert {k: run.data.params[k] for k in GOOD} == {k: str(v) for k, v in best.items()}
    challenger = tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHALLENGER)
    assert challenger.version == retrain["model_version"] == "1"
    assert challenger.run_id == run.info.run_id
    assert tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHAMPION) is None  # the gate promotes

    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["challenger_version"] == "1" and parent.info.run_name == "sentiment-asha"
    arts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"leaderboard.csv", "parameters.png", "sweep.json", "best_params.json"} <= arts
    logged = json.loads((tracking.download_artifacts(result.parent_run_id, "best_params.json")).read_text())
    assert logged["learning_rate"] == best["learning_rate"]
