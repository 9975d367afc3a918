"""Dataset readers and leak-free stratified splits."""

from __future__ import annotations

import pandas as pd
import pytest

from finpulse.sentiment import datasets as ds


def test_phrasebank_reader_latin1_and_last_at(tmp_path):
    p = tmp_path / "Sentences_50Agree.txt"
    p.write_bytes("Sepp\xe4l\xe4 sells @ 5 EUR@negative\r\nProfit rose .@positive\r\n\r\n".encode("latin-1"))
    df = ds.read_phrasebank(p)
    assert df["label"].tolist() == ["negative", "positive"]
    assert df["text"][0] == "Seppälä sells @ 5 EUR"


def test_phrasebank_reader_rejects_unknown_label(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("text@great\n", encoding="latin-1")
    with pytest.raises(ValueError, match="unknown labels"):
        ds.read_phrasebank(p)


def test_tfns_label_codes(tmp_path):
    p = tmp_path / "sent_valid.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(p, index=False)
    assert ds.read_tfns(p)["label"].tolist() == ["negative", "positive", "neutral"]


def test_csv_reader_aliases(tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"body": ["a", "b"], "sentiment": ["Bullish", "bearish"]}).to_csv(p, index=False)
    df = ds.read_labelled_csv(p, "body", "sentiment")
    assert df["label"].tolist() == ["positive", "negative"]


def _frame(n=300):
    labels = ["neutral"] * (n // 2) + ["positive"] * (n // 3) + ["negative"] * (n - n // 2 - n // 3)
    df = pd.DataFrame({"text": [f"sentence number {i}" for i in range(n)], "label": labels})
    dups = df.sample(30, random_state=1).copy()
    dups["text"] = dups["text"].str.upper() + "  "  # near-duplicates: case and spacing
    return pd.concat([df, dups], ignore_index=True)


def test_split_is_stratified_seeded_and_leak_free():
    df = _frame()
    a, b = ds.stratified_split(df, seed=7), ds.stratified_split(df, seed=7)
    assert a.train.equals(b.train) and a.test.equals(b.test)
    assert sum(a.sizes().values()) == len(df)
    keys = {name: set(part["text"].map(ds.normalise_text)) for name, part in vars(a).items()}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    groups = 300
    assert abs(len(keys["test"]) - 0.2 * groups) <= 3
    assert abs(len(keys["validation"]) - 0.2 * 0.8 * groups) <= 3
    share = a.test["label"].value_counts(normalize=True)
    assert share["neutral"] == pytest.approx(0.5, abs=0.05)
    c = ds.stratified_split(df, seed=8)
    assert set(c.test["text"]) != set(a.test["text"])


def test_vader_weak_labels():
    out = ds.vader_labelled(["great profit, wonderful quarter", "terrible loss, awful", "the meeting is today"])
    assert out["label"].tolist() == ["positive", "negative", "neutral"]


def test_real_phrasebank_and_tfns(shared_data):
    pb = ds.read_phrasebank(ds.phrasebank_path(shared_data, "50"))
    assert len(pb) == 4846
    assert pb["label"].value_counts().to_dict() == {"neutral": 2879, "positive": 1363, "negative": 604}
    assert len(ds.read_phrasebank(ds.phrasebank_path(shared_data, "all"))) == 2264
    valid = ds.read_tfns(shared_data / "twitter_financial_news_sentiment" / "sent_valid.csv")
    assert valid["label"].value_counts().to_dict() == {"neutral": 1566, "positive": 475, "negative": 347}
    s = ds.stratified_split(pb, seed=42)
    assert not set(s.train["text"].map(ds.normalise_text)) & set(s.test["text"].map(ds.normalise_text))
