"""Ray Train fine-tuning (2 DDP workers, one killed and resumed) with MLflow registration, and the Ray Data scorer."""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from ray import cloudpickle
from support.tiny_models import build_tiny_model

from finpulse import checkpoints
from finpulse.data.schemas import POST_SCORES
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import DatasetSpec
from finpulse.sentiment.model import load_classifier
from finpulse.sentiment.score import ScoreOptions, read_scores, score_frame, score_posts
from finpulse.sentiment.train import train_sentiment

pytestmark = pytest.mark.integration

POS = ["profit", "gains", "growth", "soar", "surge", "strong", "great", "record", "beat", "rose"]
NEG = ["loss", "crash", "plunge", "weak", "terrible", "bad", "miss", "fell", "bearish", "down"]
SUBJECTS = ["the stock", "shares of the company", "the market", "company report"]
TAILS = ["today", "on the quarter", "in the meeting", "says market"]


def toy_frame() -> pd.DataFrame:
    rows = []
    for i, (subj, tail) in enumerate(itertools.product(SUBJECTS, TAILS)):
        rows.append((f"{subj} {POS[i % 10]} {tail}", "positive"))
        rows.append((f"{subj} {NEG[i % 10]} {tail}", "negative"))
        rows.append((f"{subj} {tail}", "neutral"))
        rows.append((f"{POS[(i + 3) % 10]} {subj} {tail}", "positive"))
        rows.append((f"{NEG[(i + 3) % 10]} {subj} {tail}", "negative"))
        rows.append((f"{tail} {subj} held", "neutral"))
    return pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text")


@dataclass(frozen=True)
class KillOnce:
    """A worker hook: kill rank ``rank`` once, at the end of epoch ``epoch`` (after its report)."""

    epoch: int
    marker: str
    rank: int = 1

    def __call__(self, metrics: dict[str, Any]) -> None:
        if metrics["rank"] != self.rank or metrics["epoch"] != self.epoch or os.path.exists(self.marker):
            return
        Path(self.marker).write_text(f"killed rank {self.rank} after epoch {self.epoch}\n")
        # the controller collects the reported checkpoint when it next polls the workers: wait two polls
        time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0")) + 0.5)
        os._exit(1)


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/


def test_train_sentiment_two_workers_registers_challenger(ray_head, finpulse_home, tmp_path):
    csv = tmp_path / "toy.csv"
    toy_frame().to_csv(csv, index=False)
    base = build_tiny_model(tmp_path / "base", hidden_size=64, num_layers=2)
    cfg = SentimentTrainConfig(model=str(base), dataset=DatasetSpec(kind="csv", path=str(csv)), epochs=10,
                               learning_rate=3e-3, batch_size=4, patience=3, num_workers=2, cpus_per_worker=1,
                               storage_path=str(tmp_path / "ray_results"), run_name="toy", max_failures=1)
    marker = tmp_path / "killed"
    out = train_sentiment(cfg, worker_hook=KillOnce(epoch=1, marker=str(marker)))
    assert out["model_version"] == "1" and out["alias"] == "challenger"
    assert out["val_macro_f1"] > 0.6, out["history"]  # chance is ~0.33
    assert out["test"]["accuracy"] > 0.6, out["test"]
    assert 3 <= out["epochs_run"] <= 10  # patience 3: at least epochs 0-2
    # a worker died after epoch 1's checkpoint: the restarted group resumed at epoch 2, not 0
    assert marker.exists() and out["resume_points"] == [2]
    assert [h["epoch"] for h in out["history"]] == list(range(out["epochs_run"]))
    # Ray Data split the training set: each of the two workers trained on an equal half
    assert out["train_rows_per_worker"] == out["splits"]["train"] // 2
    from finpulse import tracking

    ref = tracking.get_version("finpulse-sentiment", "challenger")
    assert ref is not None and ref.version == "1"
    client = mlflow.MlflowClient()
    hist = client.get_metric_history(out["run_id"], "val_macro_f1")
    assert len(hist) == out["epochs_run"]
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"confusion_matrix_validation.png", "confusion_matrix_test.png"} <= artifacts
    assert client.get_run(out["run_id"]).data.params["num_workers"] == "2"
    # the checkpoint contract: the kept checkpoints are a Hugging Face folder + meta.json, no pickles
    kept = sorted(p for p in (tmp_path / "ray_results").rglob(checkpoints.META_FILE))
    assert kept and all((p.parent / "model" / "config.json").is_file() for p in kept)
    assert out["epochs_run"] - 1 in {checkpoints.read(p.parent)[1]["epoch"] for p in kept}
    clf = load_classifier("finpulse-sentiment@challenger")
    assert clf.version == "finpulse-sentiment/v1"
    assert clf.model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_score_posts_matches_direct_model_call(ray_head, tmp_path):
    path = build_tiny_model(tmp_path / "m", {0: "positive", 1: "negative", 2: "neutral"}, seed=5)
    texts = ["profit rose", "", "x " * 3000, "Aktien fällt — 株価 ↓", "🚀🚀📉", "loss", None, "the meeting today"] * 5
    posts = pd.DataFrame({"post_id": [f"p{i}" for i in range(len(texts))], "ticker": "AAPL", "text": texts})
    posts["text"] = posts["text"].fillna("")
    summary = score_posts(posts, str(path), str(tmp_path / "scores"),
                          ScoreOptions(batch_size=16, num_actors=2, num_cpus_per_actor=0.5, threads=1))
    assert summary["rows"] == len(posts)
    got = read_scores(str(tmp_path / "scores")).sort_values("post_id").reset_index(drop=True)
    assert list(got.columns) == POST_SCORES.names
    want = score_frame(load_classifier(str(path)), posts).sort_values("post_id").reset_index(drop=True)
    np.testing.assert_allclose(got[["p_negative", "p_neutral", "p_positive"]].to_numpy(),
                               want[["p_negative", "p_neutral", "p_positive"]].to_numpy(), atol=1e-5)
    assert (got["label"] == want["label"]).all()
    np.testing.assert_allclose(got["score"], got["p_positive"] - got["p_negative"])
    assert set(got["scorer"]) == {"m"}

    q = score_posts(posts, str(path), str(tmp_path / "scores_q"),
                    ScoreOptions(batch_size=64, num_actors=1, num_cpus_per_actor=1, precision="int8"))
    assert q["scorer"] == "m+int8"
    assert set(read_scores(str(tmp_path / "scores_q"))["scorer"]) == {"m+int8"}
    b = score_posts(posts, str(path), str(tmp_path / "scores_b"),
                    ScoreOptions(batch_size=64, num_actors=1, num_cpus_per_actor=1, precision="bf16"))
    assert b["scorer"] == "m+bf16" and b["rows"] == len(posts)
    got_b = read_scores(str(tmp_path / "scores_b")).sort_values("post_id").reset_index(drop=True)
    assert set(got_b["scorer"]) == {"m+bf16"}
    np.testing.assert_allclose(got_b[["p_negative", "p_neutral", "p_positive"]].to_numpy(),
                               want[["p_negative", "p_neutral", "p_positive"]].to_numpy(), atol=0.05)
