"""Tiny real models and features for serving tests and smoke runs (no hub, no training, seconds to build).

They are real objects behind the agreed interfaces: a 2-layer BERT classifier saved as a Hugging Face
folder (loaded by ``finpulse.sentiment.model.load_classifier``) and an untrained LSTM forecaster
saved by ``finpulse.forecast.model.save_forecaster``. Their predictions mean nothing.

Test support, not product: nothing under ``finpulse/`` imports it. ``ceiling_app`` is here too, the
trivial deployment ``benchmarks/serve_load.py`` deploys beside the app as its load ceiling (Ray workers
import it as ``tests.support.serving``: the driver's working directory, the repo root, is on their path).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

WORDS = ["good", "great", "strong", "buy", "up", "gain", "beat", "bull", "rally", "bad", "weak", "sell", "down", "loss", "miss", "bear", "crash", "flat", "hold", "stock", "market", "price", "shares", "earnings", "the", "a", "is", "and", "of", "to", "in", "on", "for", "with", "stocks", "tsla", "aapl", "msft"]


def make_tiny_sentiment_model(folder: str | Path, version: str = "tiny-sentiment-a", seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT 3-class classifier with a small WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from finpulse.sentiment.model import METADATA_FILE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz0123456789$.,!?"]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    id2label = {0: "negative", 1: "neutral", 2: "positive"}
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, id2label=id2label,
                        label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / METADATA_FILE).write_text(json.dumps({"version": version}))
    return folder


def make_features(tickers: list[str] | None = None, start: str = "2019-01-01") -> pd.DataFrame:
    """DAILY_FEATURES rows from the shipped real prices (no posts: sentiment columns are zero)."""
    from finpulse.data.features import AGGREGATE_COLUMNS, build_daily_features
    from finpulse.resources import load_prices

    prices = load_prices(tickers)
    prices = prices[pd.to_datetime(prices["date"]) >= pd.Timestamp(start)]
    return build_daily_features(prices, pd.DataFrame(columns=AGGREGATE_COLUMNS), "none")


def make_tiny_forecaster(folder: str | Path, features: pd.DataFrame, version: str = "tiny-forecast-a",
                         seed: int = 0, lookback: int = 10, hidden_size: int = 8) -> Path:
    """An untrained LSTM forecaster over the price+sentiment features, saved as a model folder."""
    import torch

    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.model import build_model, save_forecaster
    from finpulse.forecast.windows import Scaler, ticker_index

    config = ForecastConfig(lookback=lookback, hidden_size=hidden_size, embedding_dim=2, seed=seed)
    columns = config.feature_columns()
    frame = features.copy()
    frame["has_posts"] = frame["has_posts"].astype(float)
    scaler = Scaler.fit(frame, columns)
    tickers = ticker_index(sorted(features["ticker"].unique()))
    torch.manual_seed(seed)
    model = build_model(config, len(columns), len(tickers))
    return save_forecaster(folder, model, config, scaler, tickers, extra={"version": version})


def build_test_models(root: str | Path, tickers: tuple[str, ...] = ("AAPL", "MSFT", "TSLA")) -> dict[str, str]:
    """Two versions of each tiny model plus a features file: what canary tests switch between."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    feats = make_features(list(tickers), start="2020-01-01")
    feats.to_parquet(root / "features.parquet")
    return {
        "sent_a": str(make_tiny_sentiment_model(root / "sent_a", "sent-a", seed=0)),
        "sent_b": str(make_tiny_sentiment_model(root / "sent_b", "sent-b", seed=1)),
        "fc_a": str(make_tiny_forecaster(root / "fc_a", feats, "fc-a", seed=0)),
        "fc_b": str(make_tiny_forecaster(root / "fc_b", feats, "fc-b", seed=1)),
        "features": str(root / "features.parquet"),
    }


def serve_config(models: dict[str, str], port: int, deployments: list[dict] | None = None,
                 app_name: str = "finpulse", keys: str | Path | None = "shared") -> dict:
    """A declarative Serve config of the FinPulse app over ``models`` (small CPUs for a 2-core box). The
    Gateway accepts ``tests.support.access``'s keys from a keys file: the test process's shared one, or
    one written at the path ``keys``; with None, it reads what ``finpulse serve`` gives it (the home's)."""
    from tests.support.access import keys_env

    small = {"num_cpus": 0.1}
    deps = deployments or [{"name": n, "ray_actor_options": small} for n in
                           ("Gateway", "SentimentModel", "SentimentModelCanary", "Forecaster", "ForecasterCanary")]
    return {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": app_name, "route_prefix": "/", "import_path": "finpulse.serving.app:build_app",
            "args": {"sentiment_model": models["sent_a"], "forecast_model": models["fc_a"],
                     "features_uri": models["features"], "sentiment_loader_kwargs": {"threads": 1}},
            "deployments": deps,
            **({"runtime_env": {"env_vars": keys_env(None if keys == "shared" else keys)}} if keys else {}),
        }],
    }


def ceiling_app(args: dict | None = None):
    """The load ceiling: one trivial Serve deployment answering a small JSON (benchmarks/serve_load.py)."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
    class Ceiling:
        async def __call__(self, request) -> dict:
            await request.body()
            return {"ok": True}

    return Ceiling.bind()


@contextlib.contextmanager
def private_home(home: Path) -> Iterator[Path]:
    """FinPulse settings pointed at ``home`` (data root, sqlite MLflow, artifacts) for a module's app:
    canary promotion and rollback record to MLflow, never into the checkout's home."""
    import pytest

    from finpulse.config import get_settings

    mp = pytest.MonkeyPatch()
    for k, v in {"FINPULSE_HOME": str(home), "FINPULSE_DATA_ROOT": str(home / "data"),
                 "FINPULSE_MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
                 "FINPULSE_MLFLOW_ARTIFACT_LOCATION": str(home / "mlartifacts")}.items():
        mp.setenv(k, v)
    get_settings.cache_clear()
    try:
        yield home
    finally:
        mp.undo()
        get_settings.cache_clear()
