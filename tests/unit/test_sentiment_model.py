"""Label mapping by name, batching helpers and the classifier's inference path (tiny local BERTs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_model

from finpulse.sentiment.model import (
    LabelMappingError,
    canonical_index,
    clean_texts,
    cpu_has_bf16,
    length_sorted_batches,
    load_classifier,
    pad_batch,
    predictions_from_proba,
    resolve_precision,
)


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "negative", 1: "neutral", 2: "positive"}, [0, 1, 2]),
        ({0: "positive", 1: "negative", 2: "neutral"}, [1, 2, 0]),  # ProsusAI/finbert
        ({0: "Neutral", 1: "Positive", 2: "Negative"}, [2, 0, 1]),  # yiyanghkust/finbert-tone
        ({"0": "Bearish", "1": "Bullish", "2": "Neutral"}, [0, 2, 1]),  # TFNS naming, string keys
    ],
)
def test_canonical_index_maps_by_name(id2label, expected):
    assert canonical_index(id2label) == expected


def test_meaningless_labels_rejected_unless_mapped():
    labels = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    with pytest.raises(LabelMappingError, match="carries no meaning"):
        canonical_index(labels)
    mapping = {"LABEL_0": "positive", "LABEL_1": "negative", "LABEL_2": "neutral"}
    assert canonical_index(labels, mapping) == [1, 2, 0]


@pytest.mark.parametrize("labels", [{0: "negative", 1: "positive"}, {0: "neg", 1: "negative", 2: "positive"},
                                    {0: "negative", 1: "neutral", 2: "joy"}])
def test_incomplete_or_ambiguous_labels_rejected(labels):
    with pytest.raises(LabelMappingError):
        canonical_index(labels)


def test_length_sorted_batches_cover_all_once_and_group_lengths():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_sorted_batches(lengths, 3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in batches[0]] == [9, 8, 7]
    assert [len(b) for b in batches] == [3, 3, 1]


def test_pad_batch_pads_to_longest_in_batch_only():
    out = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert out["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pad_batch_rounds_the_width_up_to_a_multiple():
    out = pad_batch([[1, 2, 3], [4]], pad_id=0, multiple=4)
    assert out["input_ids"].tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert pad_batch([[1] * 16], pad_id=0, multiple=16)["input_ids"].shape == (1, 16)


def test_clean_texts_never_rejects():
    assert clean_texts([None, float("nan"), 3, "x"]) == ["", "", "3", "x"]


def test_predictions_score_is_pos_minus_neg():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    out = predictions_from_proba(p)
    assert [o["label"] for o in out] == ["negative", "positive"]
    assert out[1]["score"] == pytest.approx(0.5)
    assert out[0]["probabilities"] == pytest.approx({"negative": 0.7, "neutral": 0.2, "positive": 0.1})


def test_model_with_other_label_order_is_reordered(tmp_path):
    """Two identical networks whose heads differ only by a row permutation + id2label must agree."""
    canon = build_tiny_model(tmp_path / "canon", seed=3)
    other = build_tiny_model(tmp_path / "other", {0: "positive", 1: "negative", 2: "neutral"}, seed=3)
    from transformers import AutoModelForSequenceClassification

    net = AutoModelForSequenceClassification.from_pretrained(canon)
    perm = [2, 0, 1]  # model column j holds canonical label perm[j]
    net2 = AutoModelForSequenceClassification.from_pretrained(other)
    net2.load_state_dict(net.state_dict())
    with torch.no_grad():
        net2.classifier.weight.copy_(net.classifier.weight[perm])
        net2.classifier.bias.copy_(net.classifier.bias[perm])
    net2.save_pretrained(other)
    texts = ["profit rose strongly", "shares fell", "meeting today"]
    a = load_classifier(str(canon)).predict_proba(texts)
    b = load_classifier(str(other)).predict_proba(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_classifier_matches_direct_model_call_and_handles_odd_texts(tmp_path):
    path = build_tiny_model(tmp_path / "m", {0: "neutral", 1: "positive", 2: "negative"})
    clf = load_classifier(str(path), batch_size=2)
    texts = ["stock up", "", "x " * 5000, "Äktien fällt — 株価", "🚀🚀📉", "profit gain record growth today"]
    probs = clf.predict_proba(texts)
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():  # one text at a time, no padding at all, columns reordered by hand
        for i, t in enumerate(texts):
            enc = clf.tokenizer(t, truncation=True, max_length=clf.max_length, return_tensors="pt")
            direct = torch.softmax(clf.model(**enc).logits, -1)[0].numpy()[[2, 0, 1]]
            np.testing.assert_allclose(probs[i], direct, atol=1e-5)
    assert clf.predict_proba([]).shape == (0, 3)
    preds = clf.predict(texts[:2])
    assert set(preds[0]) == {"label", "probabilities", "score"}


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_classifier_stays_close_to_fp32(tmp_path, precision):
    path = build_tiny_model(tmp_path / "m")
    texts = ["profit rose", "loss", "shares fell on weak results", ""]
    fp = load_classifier(str(path)).predict_proba(texts)
    low = load_classifier(str(path), precision=precision)
    assert low.precision == precision
    if precision == "bf16":
        assert next(low.model.parameters()).dtype == torch.bfloat16
    else:
        assert any("quantized" in type(m).__module__ for m in low.model.modules())
    got = low.predict_proba(texts)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, fp, atol=0.05)


def test_auto_precision_and_unknown_precision(tmp_path):
    path = build_tiny_model(tmp_path / "m")
    assert load_classifier(str(path), precision="auto").precision == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        load_classifier(str(path), precision="fp8")
    with pytest.raises(ValueError, match="CPU only"):
        load_classifier(str(path), precision="int8", device="cuda")
