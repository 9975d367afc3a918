"""Sentiment evaluation: accuracy, macro-F1, per-class F1, confusion matrix, next to VADER.

Protocol (the FinBERT paper's): PhraseBank 50Agree and AllAgree, 20% test and 20% of the rest for
validation, seeded; plus the Twitter Financial News validation file. The PhraseBank test sentences
are one held-out set over all agreement files (:func:`datasets.heldout_sets`): AllAgree is a subset
of 50Agree, and a per-file split would train 50Agree models on AllAgree test sentences. The published figures sit in
the same table so a reader sees the goal next to the measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import datasets as ds

# Published reference points (FinBERT: Araci 2019, table 2; finbert-tone fine-tuned on TFNS: model card).
PUBLISHED = {
    "finbert_phrasebank_50agree_accuracy": 0.86,
    "finbert_phrasebank_50agree_macro_f1": 0.84,
    "finbert_phrasebank_allagree_accuracy": 0.97,
    "finbert_phrasebank_allagree_macro_f1": 0.95,
    "finbert_tone_tfns_valid_accuracy": 0.884,
}


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows true, columns predicted)."""
    labels = list(SENTIMENT_LABELS)
    y_true, y_pred = list(y_true), list(y_pred)
    if not y_true:
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan"),
                **{f"f1_{c}": float("nan") for c in labels}, "confusion_matrix": [[0] * 3 for _ in labels]}
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        **{f"f1_{c}": float(f) for c, f in zip(labels, per_class, strict=True)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def confusion_matrix_figure(cm: Sequence[Sequence[int]], title: str = "confusion matrix") -> Any:
    """A matplotlib figure of the confusion matrix (logged to MLflow as a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(arr, cmap="Blues")
    ax.set_xticks(range(3), SENTIMENT_LABELS, rotation=30)
    ax.set_yticks(range(3), SENTIMENT_LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center",
                    color="white" if arr[i, j] > arr.max() / 2 else "black")
    fig.tight_layout()
    return fig


def vader_predict(texts: Sequence[str]) -> np.ndarray:
    from finpulse.sentiment.labels import label_from_compound, vader_compound

    return label_from_compound(vader_compound(texts))


def model_predict(classifier: Any) -> Callable[[Sequence[str]], np.ndarray]:
    def predict(texts: Sequence[str]) -> np.ndarray:
        probs = classifier.predict_proba(list(texts))
        return np.asarray(SENTIMENT_LABELS, dtype=object)[probs.argmax(axis=1)]
    return predict


def evaluation_sets(data_dir: str | Path, seed: int = ds.SPLIT_SEED) -> dict[str, pd.DataFrame]:
    """The three evaluation sets: PhraseBank 50Agree/AllAgree test (one held-out set drawn over the
    union of the agreement files, so no agreement file's training split holds a test sentence) and
    TFNS validation. ``seed`` is the held-out set's seed (training's ``split_seed``), not a model seed."""
    return ds.heldout_sets(data_dir, split_seed=seed)


def evaluate_sets(predictors: dict[str, Callable[[Sequence[str]], np.ndarray]],
                  sets: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{predictor: {set: metrics}}`` for every predictor on every set."""
    return {p: {s: classification_metrics(df["label"], fn(df["text"].tolist())) for s, df in sets.items()}
            for p, fn in predictors.items()}


def flat_summary(results: dict[str, dict[str, dict[str, Any]]], model_key: str = "model") -> dict[str, float]:
    """Benchmark keys: ``phrasebank_50agree_accuracy`` ... for the model, ``vader_*`` for VADER."""
    out: dict[str, float] = {}
    for pred, sets in results.items():
        prefix = "" if pred == model_key else f"{pred}_"
        for s, m in sets.items():
            out[f"{prefix}{s}_accuracy"] = m["accuracy"]
            out[f"{prefix}{s}_macro_f1"] = m["macro_f1"]
    return out


def format_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A text table: one row per (predictor, set)."""
    lines = [f"{'predictor':<12} {'set':<22} {'n':>6} {'acc':>7} {'macroF1':>8} {'F1 neg':>7} {'F1 neu':>7} {'F1 pos':>7}"]
    for pred, sets in results.items():
        for s, m in sets.items():
            lines.append(f"{pred:<12} {s:<22} {m['n']:>6} {m['accuracy']:>7.3f} {m['macro_f1']:>8.3f} "
                         f"{m['f1_negative']:>7.3f} {m['f1_neutral']:>7.3f} {m['f1_positive']:>7.3f}")
    return "\n".join(lines)


def evaluate_sentiment(model: str, data_dir: str | Path, *, seed: int = ds.SPLIT_SEED, max_length: int = 128,
                       include_vader: bool = True) -> dict[str, Any]:
    """The evaluation table for one model (registry spec, folder or hub id) and VADER."""
    from finpulse.sentiment.model import load_classifier

    clf = load_classifier(model, max_length=max_length)
    predictors = {"model": model_predict(clf)}
    if include_vader:
        predictors["vader"] = vader_predict
    results = evaluate_sets(predictors, evaluation_sets(data_dir, seed))
    return {"model": clf.version, "results": results, "summary": flat_summary(results), "published": PUBLISHED}
