"""The plain-torch epoch loop (no Ray): learns a separable toy set, checkpoints, stops early, resumes."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_model

from finpulse import checkpoints
from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.evaluate import classification_metrics
from finpulse.sentiment.loop import (
    MODEL_SUBDIR,
    Examples,
    KeepBest,
    batch_loss,
    bucketed_batches,
    fit,
    layer_of,
    parameter_groups,
)
from finpulse.sentiment.model import METADATA_FILE, load_classifier
from finpulse.sentiment.pretrained import build_model

POS = ["profit rose", "strong gains today", "record growth", "shares soar", "great results", "stock surge up"]
NEG = ["big loss", "shares fell down", "weak quarter", "stock crash", "terrible results", "price plunge down"]
NEU = ["meeting held today", "company announced report", "the quarter report", "market says",
       "shares of the company", "report on the meeting"]


def toy_splits(reps: int = 4) -> tuple[Examples, Examples]:
    texts, labels = [], []
    for _ in range(reps):
        for group, lab in ((POS, "positive"), (NEG, "negative"), (NEU, "neutral")):
            texts += group
            labels += [lab] * len(group)
    return Examples(texts, labels), Examples(POS + NEG + NEU, ["positive"] * 6 + ["negative"] * 6 + ["neutral"] * 6)


def test_bucketed_batches_cover_everything_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=103)
    batches = bucketed_batches(lengths, 8, rng, pool_batches=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))


def test_bucketed_batches_pad_less_than_random_batches_on_a_shard():
    """A worker buckets its own shard: batches of similar length waste little padding."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 64, size=500)  # one rank's shard

    def padding(batches: list[np.ndarray]) -> int:
        return int(sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches))

    bucketed = bucketed_batches(lengths, 16, np.random.default_rng(2))
    order = np.random.default_rng(2).permutation(len(lengths))
    plain = [order[i:i + 16] for i in range(0, len(order), 16)]
    assert len(bucketed) == len(plain)
    assert padding(bucketed) < 0.25 * padding(plain)


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


def test_fit_learns_toy_set_and_checkpoints(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=64, num_layers=2)
    cfg = SentimentTrainConfig(model=str(base), epochs=10, learning_rate=3e-3, batch_size=8, patience=4,
                               warmup_ratio=0.1)
    keep = KeepBest(tmp_path / "best")
    metas = []

    def on_epoch(metrics, folder):
        keep(metrics, folder)
        state, meta = checkpoints.read(folder)  # the checkpoint contract: JSON meta, weights_only state
        assert state == {}
        metas.append(meta)

    result = fit(cfg, *toy_splits(), on_epoch=on_epoch)
    assert len(keep.reports) >= 2 and len(result.history) == len(keep.reports)
    assert [h["epoch"] for h in metas[-1]["history"]] == list(range(len(keep.reports)))
    assert metas[-1]["early_stop"]["best"] == result.best_val_macro_f1 == keep.best
    assert metas[-1]["train_rows"] == 72 and metas[-1]["resume_points"] == []
    assert len(metas[-1]["val_confusion_matrix"]) == 3
    assert result.best_val_macro_f1 > 0.8, result.history  # chance is ~0.33
    meta = json.loads((keep.dest / METADATA_FILE).read_text())
    assert meta["base_model"] == str(base) and meta["epoch"] == result.best_epoch
    clf = load_classifier(str(keep.dest))
    assert [p["label"] for p in clf.predict(["record growth", "stock crash"])] == ["positive", "negative"]


def test_early_stopping_stops_after_patience(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=32, num_layers=1)
    cfg = SentimentTrainConfig(model=str(base), epochs=20, learning_rate=0.0, batch_size=8, patience=2)
    reports = []
    fit(cfg, *toy_splits(1), on_epoch=lambda m, d: reports.append(m))
    assert len(reports) == 3  # lr 0: no improvement after epoch 0, two bad epochs, stop


class Crash(RuntimeError):
    pass


def test_resume_continues_after_the_checkpoint_with_its_state(tmp_path):
    """A worker dies after epoch 1's checkpoint: the next attempt starts at epoch 2 from that
    checkpoint's weights, history and early-stopping state."""
    base = build_tiny_model(tmp_path / "base", hidden_size=32, num_layers=1)
    cfg = SentimentTrainConfig(model=str(base), epochs=4, learning_rate=3e-3, batch_size=8, patience=10)
    saved = tmp_path / "ckpt"

    def die_after_epoch_1(metrics, folder):
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(folder, saved)
        if metrics["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        fit(cfg, *toy_splits(2), on_epoch=die_after_epoch_1)
    before = checkpoints.read_meta(saved)
    assert before["epoch"] == 1 and before["early_stop"]["bad_epochs"] in (0, 1)
    weights = load_classifier(str(saved / MODEL_SUBDIR)).model.state_dict()
    after: dict = {}

    def keep_epoch_2(metrics, folder):
        if metrics["epoch"] == 2:
            after.update(load_classifier(str(folder / MODEL_SUBDIR)).model.state_dict())
            assert checkpoints.read_meta(folder)["early_stop"]["best"] >= before["early_stop"]["best"]

    # learning rate 0 after the restart: epoch 2's weights must be exactly the checkpoint's
    frozen = dataclasses.replace(cfg, learning_rate=0.0)
    result = fit(frozen, *toy_splits(2), on_epoch=keep_epoch_2, resume=saved)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.history[:2] == before["history"]
    assert result.resume_points == [2]
    assert set(after) == set(weights)
    for name, value in weights.items():
        torch.testing.assert_close(after[name], value, msg=name)


@pytest.mark.parametrize("bad", [Examples(["a"], ["great"])])
def test_unknown_label_in_training_data_fails(tmp_path, bad):
    base = build_tiny_model(tmp_path / "base")
    cfg = SentimentTrainConfig(model=str(base), epochs=1)
    with pytest.raises(KeyError):
        fit(cfg, bad, bad, on_epoch=lambda m, d: None)


def test_layer_wise_rates_shrink_with_depth_and_spare_norms_from_decay(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=32, num_layers=2)
    model, _ = build_model(str(base))
    cfg = SentimentTrainConfig(model=str(base), learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01)
    groups = parameter_groups(model, cfg)
    ids = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(ids) == len(named)  # every parameter trains, once
    lr = {n: ids[id(p)]["lr"] for n, p in named.items()}
    emb = next(n for n in named if "embeddings.word_embeddings" in n)
    layer0 = next(n for n in named if ".layer.0." in n and n.endswith("weight") and "LayerNorm" not in n)
    layer1 = next(n for n in named if ".layer.1." in n and n.endswith("weight") and "LayerNorm" not in n)
    head = next(n for n in named if n.startswith("classifier") and n.endswith("weight"))
    assert lr[head] == pytest.approx(1e-3) and lr[layer1] == pytest.approx(5e-4)
    assert lr[layer0] == pytest.approx(2.5e-4) and lr[emb] == pytest.approx(1.25e-4)
    assert ids[id(named[head.replace("weight", "bias")])]["weight_decay"] == 0.0
    assert ids[id(named[head])]["weight_decay"] == 0.01
    assert layer_of("bert.encoder.layer.11.output.dense.weight", 12) == 12


def test_bf16_training_learns_the_toy_set(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden_size=64, num_layers=2)
    cfg = SentimentTrainConfig(model=str(base), epochs=10, learning_rate=3e-3, batch_size=8, patience=4,
                               train_precision="bf16", layer_decay=0.9)
    assert fit(cfg, *toy_splits()).best_val_macro_f1 > 0.8


def test_distillation_follows_the_teacher_when_it_weighs_everything(tmp_path):
    """With distill_weight=1 the labels are ignored: a teacher that swaps positive and negative wins."""
    base = build_tiny_model(tmp_path / "base", hidden_size=64, num_layers=2)
    train, val = toy_splits()
    swapped = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
    soft = np.array([[0.9 if SENTIMENT_LABELS[j] == swapped[lab] else 0.05 for j in range(3)] for lab in train.labels],
                    dtype=np.float32)
    cfg = SentimentTrainConfig(model=str(base), epochs=10, learning_rate=3e-3, batch_size=8, patience=10,
                               distill_weight=1.0, distill_temperature=1.0)
    keep = KeepBest(tmp_path / "best")
    fit(cfg, Examples(train.texts, train.labels, soft), val, on_epoch=keep)
    labels = [p["label"] for p in load_classifier(str(keep.dest)).predict(["record growth", "stock crash"])]
    assert labels == ["negative", "positive"]


def test_batch_loss_is_cross_entropy_without_a_teacher():
    logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    cfg = SentimentTrainConfig()
    assert batch_loss(logits, y, None, cfg) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    soft = torch.softmax(logits, dim=-1)  # a teacher that agrees with the student adds no KL
    mixed = batch_loss(logits, y, soft, dataclasses.replace(cfg, distill_weight=0.5))
    assert mixed == pytest.approx(0.5 * float(torch.nn.functional.cross_entropy(logits, y)), abs=1e-5)
