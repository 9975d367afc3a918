"""The sentiment gate: challenger -> champion only on labelled held-out data, never on VADER agreement.

The rule is pure (``decide``); ``gate`` is run end to end on a real sqlite MLflow with two registered
models that differ only in what they learnt (tiny classifiers from tests/support), and VADER scored
on the shipped TFNS validation set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finpulse import tracking
from finpulse.sentiment import promote
from finpulse.sentiment.datasets import heldout_sets, shipped_root

POLICY = promote.SentimentGatePolicy()


def _scores(acc: float, f1: float, name: str = "tfns_valid") -> dict[str, dict[str, float]]:
    return {name: {"accuracy": acc, "macro_f1": f1}}


def test_first_model_needs_only_to_beat_vader() -> None:
    assert promote.decide(_scores(0.80, 0.75), None, _scores(0.55, 0.50), POLICY).promote
    lost = promote.decide(_scores(0.54, 0.75), None, _scores(0.55, 0.50), POLICY)
    assert not lost.promote and any("worse than VADER" in r and "accuracy" in r for r in lost.reasons)


def test_challenger_must_not_lose_to_the_champion_beyond_the_tolerance() -> None:
    vader = _scores(0.5, 0.5)
    worse = promote.decide(_scores(0.80, 0.70), _scores(0.82, 0.70), vader, POLICY)
    assert not worse.promote and any("champion's 0.820" in r for r in worse.reasons)
    tolerated = promote.decide(_scores(0.80, 0.70), _scores(0.82, 0.70), vader,
                               promote.SentimentGatePolicy(tolerance=0.03))
    assert tolerated.promote
    assert worse.metrics["champion_tfns_valid_accuracy"] == 0.82


def test_every_set_must_pass() -> None:
    mine = {**_scores(0.9, 0.9), **_scores(0.4, 0.4, "phrasebank_50agree")}
    vader = {**_scores(0.5, 0.5), **_scores(0.5, 0.5, "phrasebank_50agree")}
    out = promote.decide(mine, None, vader, POLICY)
    assert not out.promote and all("phrasebank_50agree" in r for r in out.reasons)


def test_evaluation_sets_are_the_shipped_held_out_tweets_and_never_the_training_file() -> None:
    sets = promote.evaluation_sets(None, promote.SentimentGatePolicy(eval_examples=300))
    assert list(sets) == ["tfns_valid"] and 290 <= len(sets["tfns_valid"]) <= 310
    full = heldout_sets(shipped_root())["tfns_valid"]
    assert len(full) == 2388
    assert set(sets["tfns_valid"]["label"]) == {"negative", "neutral", "positive"}
    train = pd.read_csv(Path(shipped_root()) / "twitter_financial_news_sentiment" / "sent_train.csv")
    assert not set(train["text"]) & set(sets["tfns_valid"]["text"])
    assert promote.protocol(sets) == promote.protocol(promote.evaluation_sets(None, promote.SentimentGatePolicy(
        eval_examples=300))) != promote.protocol({"tfns_valid": full})


def test_gate_refuses_a_model_that_does_not_read_and_records_why(finpulse_home: Path, tmp_path: Path) -> None:
    """A random tiny classifier registered as challenger: scored on the shipped held-out tweets it loses
    to VADER, so no champion appears; the decision run says why. (A fine-tuned MiniLM passing the gate
    is the pipeline integration test's.)"""
    from tests.support.tiny_models import build_tiny_model

    folder = build_tiny_model(tmp_path / "tiny")
    with tracking.start_run(tracking.SENTIMENT_EXPERIMENT, "gate-test"):
        ref = tracking.log_model_dir(folder, registered_model_name=tracking.SENTIMENT_MODEL,
                                     alias=tracking.CHALLENGER)
    decision = promote.gate(promote.SentimentGatePolicy(eval_examples=200))
    assert not decision.promote and decision.challenger == ref.label and decision.champion is None
    assert any("worse than VADER" in r for r in decision.reasons)
    assert tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHAMPION) is None
    assert tracking.run_metrics(ref.run_id)["gate_tfns_valid_accuracy"] == decision.metrics[
        "challenger_tfns_valid_accuracy"]


def test_demo_training_subset_is_balanced_and_keeps_the_whole_test_file() -> None:
    from finpulse.sentiment.datasets import DatasetSpec, balanced_subset, load_splits

    splits = load_splits(DatasetSpec(kind="tfns"))  # no path: the shipped copy
    small = balanced_subset(splits, 900, seed=1)
    assert small.train["label"].value_counts().to_dict() == {"negative": 300, "neutral": 300, "positive": 300}
    assert len(small.validation) == 900 and len(small.test) == len(splits.test) == 2388
    assert set(small.train["text"]) <= set(splits.train["text"])
