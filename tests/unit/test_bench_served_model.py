"""sentiment.json's served_model key: the demo champion's name, the counted parameters, and the scorer's
throughput at the precision Serve loads the model with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from support.tiny_models import build_tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _served_model import SERVE_CONFIG, served_model, served_precision

from finpulse.sentiment.model import cpu_has_bf16

RESULT = {"scorer_texts_per_s": 203.5, "scorer_layout": "2 actor(s) x 1 thread(s)",
          "bf16_scorer_texts_per_s": 467.8, "bf16_scorer_layout": "2 actor(s) x 1 thread(s)",
          "int8_scorer_texts_per_s": 588.3}


def serve_config(tmp_path, precision: str | None) -> Path:
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    kwargs = cfg["applications"][0]["args"].setdefault("sentiment_loader_kwargs", {})
    kwargs.pop("precision", None)
    if precision:
        kwargs["precision"] = precision
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_served_precision_reads_the_serve_config(tmp_path):
    assert served_precision() == ("bf16" if cpu_has_bf16() else "fp32")  # local.yaml says auto
    assert served_precision(serve_config(tmp_path, "int8")) == "int8"
    assert served_precision(serve_config(tmp_path, None)) == "fp32"  # load_classifier's default


@pytest.mark.parametrize(("precision", "tps"), [("fp32", 203.5), ("bf16", 467.8)])
def test_served_model_key(tmp_path, precision, tps):
    path = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1)
    from transformers import AutoModelForSequenceClassification

    want = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(path).parameters())
    out = served_model(RESULT, path, precision=precision, benchmarked="here")
    assert out["name"].startswith("all-MiniLM-L6-v2") and "fine-tuned on Twitter Financial News" in out["name"]
    assert out["parameters"] == want > 0
    assert out["texts_per_s"] == tps and out["precision"] == precision
    assert out["layout"] == "2 actor(s) x 1 thread(s)" and out["benchmarked"] == "here"


def test_served_model_without_throughput_says_none(tmp_path):
    path = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1)
    out = served_model({}, path, precision="bf16", base=str(path), trained_on="x")
    assert out["texts_per_s"] is None and out["name"] == f"{path} fine-tuned on x"
