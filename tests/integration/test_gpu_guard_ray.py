"""GPU options on a Ray cluster without GPUs (the CPU-only session head): they fail at once with a clear
message instead of a Train worker group or a Data actor pool pending forever for a GPU that never comes."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import ray
from support.tiny_models import build_tiny_model

from finpulse.runtime import GpuUnavailable, require_gpus
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import Splits
from finpulse.sentiment.score import ScoreOptions, score_posts
from finpulse.sentiment.train import fit_with_ray


def test_the_session_head_has_no_gpu(ray_head):
    assert ray.cluster_resources().get("GPU", 0) == 0  # the premise of the tests below
    assert require_gpus(0, "cpu run") == 0.0


def test_require_gpus_fails_at_once_and_after_the_autoscaler_wait(ray_head):
    t0 = time.perf_counter()
    with pytest.raises(GpuUnavailable, match=r"asks for 1 GPU\(s\) but the Ray cluster has 0\. "):
        require_gpus(1, "x")
    assert time.perf_counter() - t0 < 2
    t0 = time.perf_counter()
    with pytest.raises(GpuUnavailable, match="after waiting 1s for the autoscaler"):
        require_gpus(1, "x", wait_s=1.0, poll_s=0.2)
    assert 1.0 <= time.perf_counter() - t0 < 5


def test_train_sentiment_use_gpu_fails_fast(ray_head, tmp_path):
    model = build_tiny_model(tmp_path / "m")
    frame = pd.DataFrame({"text": ["profit rose", "shares fell", "meeting today"], "label": ["positive", "negative",
                                                                                             "neutral"]})
    config = SentimentTrainConfig(model=str(model), use_gpu=True, num_workers=2, storage_path=str(tmp_path / "ray"))
    t0 = time.perf_counter()
    with pytest.raises(GpuUnavailable, match=r"train-sentiment --use-gpu \(2 worker\(s\)\) asks for 2 GPU"):
        fit_with_ray(config, Splits(frame, frame, frame), tmp_path / "out")
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "out").exists() and not (tmp_path / "ray").exists()


def test_score_gpus_fails_fast(ray_head, tmp_path):
    model = build_tiny_model(tmp_path / "m")
    posts = pd.DataFrame({"post_id": ["1", "2"], "ticker": "X", "text": ["profit rose", "shares fell"]})
    t0 = time.perf_counter()
    with pytest.raises(GpuUnavailable, match=r"score --gpus 0\.5 \(2 actor\(s\)\) asks for 1 GPU"):
        score_posts(posts, str(model), str(tmp_path / "scores"), ScoreOptions(num_actors=2, gpus=0.5))
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "scores").exists()


def test_train_sentiment_use_gpu_fails_before_the_mlflow_run(ray_head, finpulse_home, tmp_path):
    import mlflow

    from finpulse.config import get_settings
    from finpulse.sentiment.train import train_sentiment

    model = build_tiny_model(tmp_path / "m")
    frame = pd.DataFrame({"text": ["profit rose", "shares fell", "meeting today"], "label": ["positive", "negative",
                                                                                             "neutral"]})
    config = SentimentTrainConfig(model=str(model), use_gpu=True, storage_path=str(tmp_path / "ray"))
    with pytest.raises(GpuUnavailable, match="train-sentiment --use-gpu"):
        train_sentiment(config, splits=Splits(frame, frame, frame))
    client = mlflow.MlflowClient(get_settings().mlflow_tracking_uri)
    assert [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])] == []
