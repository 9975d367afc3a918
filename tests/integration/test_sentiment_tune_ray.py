"""`tune_sentiment` on the session Ray head: ASHA over a tiny BERT, trials as MLflow child runs, the best retrained
with Ray Train and registered as challenger."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from support.tiny_models import build_tiny_model

from finpulse import tracking
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import DatasetSpec
from finpulse.sentiment.tune import TuneOptions, tune_sentiment

pytestmark = pytest.mark.integration

WORDS = {"positive": ["profit", "gains", "growth", "soar", "surge", "strong"],
         "negative": ["loss", "crash", "plunge", "weak", "terrible", "miss"]}
SUBJECTS = ["the stock", "shares of the company", "the market", "company report"]
TAILS = ["today", "on the quarter", "in the meeting"]

# The tiny random BERT answers one class for its first two epochs whatever the rate (macro-F1 1/6), so ASHA's
# first rung is at epoch 3 here (the command's default grace period is 1 epoch).
GOOD = {"learning_rate": 3e-3, "epochs": 6, "max_length": 32, "warmup_ratio": 0.0, "batch_size": 4}
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
    base = SentimentTrainConfig(model=str(build_tiny_model(tmp_path / "base", hidden_size=64)), patience=5,
                                dataset=DatasetSpec(kind="csv", path=toy_csv(tmp_path / "toy.csv")),
                                storage_path=str(tmp_path / "ray_results"))
    # one trial at a time, GOOD first: DEAD then meets the rung's cutoff (the median of GOOD's and its own
    # macro-F1 at epoch 3), which it is below; with two at a time the order of reports would decide
    result = tune_sentiment(base, TuneOptions(configs=[GOOD, DEAD, OTHER], max_concurrent=1, max_examples=None,
                                              grace_period=3, reduction_factor=2))
    table = result.trials
    assert len(table) == 3 and result.splits["train"] >= 40
    # ASHA stopped the trial that learnt nothing at its rung (epoch 3 of 6); the others ran all 6
    dead = table[table["learning_rate"] == DEAD["learning_rate"]].iloc[0]
    assert dead["stopped_early"] and dead["epochs_run"] == 3, table.to_string()
    assert list(table["stopped_early"]).count(True) == 1 and set(table["epochs_run"]) == {3, 6}
    assert table["best_val_macro_f1"].iloc[0] > dead["best_val_macro_f1"]

    client = MlflowClient()
    children = client.search_runs([tracking.experiment(tracking.SENTIMENT_EXPERIMENT)], filter_string=(
        f"tags.mlflow.parentRunId = '{result.parent_run_id}' and tags.`finpulse.kind` = 'tune-trial'"))
    assert {c.info.run_id for c in children} == set(table["mlflow_run_id"])
    for child in children:
        row = table[table["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert {k: child.data.params[k] for k in GOOD} == {k: str(row[k]) for k in GOOD}
        steps = client.get_metric_history(child.info.run_id, "val_macro_f1")
        assert len(steps) == row["epochs_run"]
        assert max(s.value for s in steps) == pytest.approx(row["best_val_macro_f1"])
        assert child.info.status == ("KILLED" if row["stopped_early"] else "FINISHED")

    # the best trial's configuration is the one retrained (a child of the search) and registered as challenger
    best = {k: table[k].iloc[0] for k in GOOD}
    assert {k: getattr(result.best_config, k) for k in GOOD} == best
    retrain = client.get_run(result.retrain["run_id"])
    assert retrain.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert {k: retrain.data.params[k] for k in GOOD} == {k: str(v) for k, v in best.items()}
    challenger = tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHALLENGER)
    assert challenger.version == result.retrain["model_version"] == "1"
    assert challenger.run_id == retrain.info.run_id

    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["challenger_version"] == "1" and parent.data.metrics["trials_stopped_early"] >= 1
    arts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"trials.csv", "best_config.json", "search_space.json"} <= arts
    logged = json.loads((tracking.download_artifacts(result.parent_run_id, "best_config.json")).read_text())
    assert logged["learning_rate"] == best["learning_rate"]
