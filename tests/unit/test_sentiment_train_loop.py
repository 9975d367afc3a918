"""The plain-torch epoch loop (no Ray): learns a separable toy set; metrics and pure helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finpulse.sentiment.evaluate import classification_metrics
from finpulse.sentiment.model import METADATA_FILE, build_tiny_model, load_classifier
from finpulse.sentiment.train import SentimentTrainConfig, bucketed_batches, build_model, shard, training_loop

POS = ["profit rose", "strong gains today", "record growth", "shares soar", "great results", "stock surge up"]
NEG = ["big loss", "shares fell down", "weak quarter", "stock crash", "terrible results", "price plunge down"]
NEU = ["meeting held today", "company announced report", "the quarter report", "market says",
       "shares of the company", "report on the meeting"]


def toy_splits(reps: int = 4) -> dict:
    texts, labels = [], []
    for _ in range(reps):
        for group, lab in ((POS, "positive"), (NEG, "negative"), (NEU, "neutral")):
            texts += group
            labels += [lab] * len(group)
    return {"train": {"text": texts, "label": labels},
            "validation": {"text": POS + NEG + NEU, "label": ["positive"] * 6 + ["negative"] * 6 + ["neutral"] * 6}}


def test_bucketed_batches_cover_everything_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=103)
    batches = bucketed_batches(lengths, 8, rng, pool_batches=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))


def test_shards_equal_size_and_disjoint():
    rng = np.random.default_rng(0)
    a, b = shard(11, 0, 2, np.random.default_rng(1)), shard(11, 1, 2, np.random.default_rng(1))
    assert len(a) == len(b) == 5 and not set(a) & set(b)
    del rng


def test_metrics():
    m = classification_metrics(["negative", "neutral", "positive", "positive"],
                               ["negative", "neutral", "neutral", "positive"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m["f1_negative"] == 1.0


def test_build_model_permutes_named_head_into_canonical_order(tmp_path):
    path = build_tiny_model(tmp_path / "fb", {0: "positive", 1: "negative", 2: "neutral"}, seed=1)
    before = load_classifier(str(path)).predict_proba(["profit rose", "loss"])
    net, _tok = build_model(str(path))
    assert net.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    net.save_pretrained(tmp_path / "canon")
    _tok.save_pretrained(tmp_path / "canon")
    after = load_classifier(str(tmp_path / "canon")).predict_proba(["profit rose", "loss"])
    np.testing.assert_allclose(before, after, atol=1e-6)


def test_training_loop_learns_toy_set_and_checkpoints(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=64, num_layers=2)
    cfg = SentimentTrainConfig(model=str(base), epochs=10, learning_rate=3e-3, batch_size=8, patience=4,
                               warmup_ratio=0.1).model_dump()
    reports = []
    saved = tmp_path / "ckpt"

    def report(metrics, ckpt_dir):
        reports.append(metrics)
        if ckpt_dir and metrics["val_macro_f1"] >= max(r["val_macro_f1"] for r in reports):
            import shutil

            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(ckpt_dir, saved)

    training_loop(cfg, toy_splits(), report=report)
    assert len(reports) >= 2
    assert all("history" in r for r in reports)
    best = max(r["val_macro_f1"] for r in reports)
    assert best > 0.8, reports[-1]["history"]  # chance is ~0.33
    meta = json.loads((saved / METADATA_FILE).read_text())
    assert meta["base_model"] == str(base)
    clf = load_classifier(str(saved))
    assert [p["label"] for p in clf.predict(["record growth", "stock crash"])] == ["positive", "negative"]


def test_early_stopping_stops_after_patience(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=32, num_layers=1)
    cfg = SentimentTrainConfig(model=str(base), epochs=20, learning_rate=0.0, batch_size=8, patience=2).model_dump()
    reports = []
    training_loop(cfg, toy_splits(1), report=lambda m, d: reports.append(m))
    assert len(reports) == 3  # lr 0: no improvement after epoch 0, two bad epochs, stop


@pytest.mark.parametrize("bad", [{"text": ["a"], "label": ["great"]}])
def test_unknown_label_in_training_data_fails(tmp_path, bad):
    base = build_tiny_model(tmp_path / "base")
    cfg = SentimentTrainConfig(model=str(base), epochs=1).model_dump()
    with pytest.raises(KeyError):
        training_loop(cfg, {"train": bad, "validation": bad}, report=lambda m, d: None)
