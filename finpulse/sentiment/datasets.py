"""Labelled sentiment data: readers for each corpus and leak-free stratified splits.

Every reader returns a frame with ``text`` and ``label`` (canonical names). Splits group texts by a
normalised form first, so a sentence and its duplicate never sit on two sides of a split (PhraseBank
carries exact duplicates; tweets carry near-duplicates differing in case and spacing).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import DatasetKind

TFNS_LABELS = {0: "negative", 1: "positive", 2: "neutral"}  # 0 bearish, 1 bullish, 2 neutral
PHRASEBANK_FILES = {"50": "Sentences_50Agree.txt", "66": "Sentences_66Agree.txt",
                    "75": "Sentences_75Agree.txt", "all": "Sentences_AllAgree.txt"}


def read_phrasebank(path: str | Path) -> pd.DataFrame:
    """Financial PhraseBank ``sentence@label`` file (latin-1; the label follows the LAST ``@``)."""
    rows = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            text, sep, label = line.rpartition("@")
            if not sep:
                raise ValueError(f"{path}: line without '@': {line[:60]!r}")
            rows.append((text.strip(), label.strip().lower()))
    df = pd.DataFrame(rows, columns=["text", "label"])
    _check_labels(df, str(path))
    return df


def phrasebank_path(data_dir: str | Path, agreement: str = "50") -> Path:
    key = str(agreement).lower().removesuffix("agree")
    return Path(data_dir) / "financial_phrasebank" / PHRASEBANK_FILES[key]


def read_tfns(path: str | Path) -> pd.DataFrame:
    """Twitter Financial News Sentiment CSV (text,label with 0 bearish, 1 bullish, 2 neutral)."""
    raw = pd.read_csv(path)
    df = pd.DataFrame({"text": raw["text"].astype(str), "label": raw["label"].astype(int).map(TFNS_LABELS)})
    _check_labels(df, str(path))
    return df


def read_labelled_csv(path: str | Path, text_column: str = "text", label_column: str = "label",
                      label_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Any CSV with a text and a label column; labels are names (aliases allowed) or mapped by ``label_map``."""
    from finpulse.sentiment.model import canonical_label

    raw = pd.read_csv(path)
    labels = raw[label_column].astype(str)
    if label_map:
        labels = labels.map(lambda v: label_map.get(v, v))
    df = pd.DataFrame({"text": raw[text_column].astype(str), "label": labels.map(canonical_label)})
    _check_labels(df, str(path))
    return df


def vader_labelled(texts: pd.Series | list[str]) -> pd.DataFrame:
    """Weak labels from VADER (the original design's approach) for an unlabelled post corpus."""
    from finpulse.sentiment.labels import label_from_compound, vader_compound

    texts = pd.Series(list(texts), dtype=str)
    return pd.DataFrame({"text": texts.values, "label": label_from_compound(vader_compound(texts))})


def _check_labels(df: pd.DataFrame, where: str) -> None:
    bad = sorted(set(df["label"].dropna()) - set(SENTIMENT_LABELS)) + (["<null>"] if df["label"].isna().any() else [])
    if bad:
        raise ValueError(f"{where}: unknown labels {bad}")


# ---- splits ----------------------------------------------------------------------------------------

def normalise_text(text: str) -> str:
    """Key for duplicate detection: NFKC, case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", str(text))).strip().casefold()


@dataclass
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def _stratified_take(groups: pd.DataFrame, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing ``frac`` of the groups within each label (exact per-class rounding)."""
    take = np.zeros(len(groups), dtype=bool)
    for _, idx in groups.groupby("label").indices.items():
        n = int(round(frac * len(idx)))
        take[rng.permutation(idx)[:n]] = True
    return take


def stratified_split(df: pd.DataFrame, test_size: float = 0.2, validation_size: float = 0.2,
                     seed: int = 42) -> Splits:
    """Train/validation/test, stratified by label, duplicates kept on one side, seeded.

    Defaults follow the FinBERT paper: 20% test, then 20% of the rest for validation. Each duplicate
    group takes its most frequent label for stratification; its rows keep their own labels.
    """
    df = df.reset_index(drop=True)
    key = df["text"].map(normalise_text)
    groups = (pd.DataFrame({"key": key, "label": df["label"]})
              .groupby("key", sort=True)["label"].agg(lambda s: s.value_counts().index[0]).reset_index())
    rng = np.random.default_rng(seed)
    is_test = _stratified_take(groups, test_size, rng)
    rest = groups[~is_test].reset_index(drop=True)
    is_val = _stratified_take(rest, validation_size, rng)
    test_keys, val_keys = set(groups.loc[is_test, "key"]), set(rest.loc[is_val, "key"])
    side = key.map(lambda k: "test" if k in test_keys else ("validation" if k in val_keys else "train"))
    parts = {name: df[side == name].sample(frac=1.0, random_state=seed).reset_index(drop=True)
             for name in ("train", "validation", "test")}
    return Splits(**parts)


# ---- one typed spec for every source -----------------------------------------------------------------

DATASET_KINDS = ("phrasebank", "tfns", "csv", "vader_posts", "vader_synthetic")


@dataclass
class DatasetSpec:
    """Which labelled data to train on. ``kind`` picks the reader; ``path`` is a file or data folder
    (csv, PhraseBank .txt, posts Parquet, or the shared data folder). A plain dataclass: the GPU
    benchmark imports this on a device image that has no pydantic."""

    kind: DatasetKind = "phrasebank"
    path: str | None = None
    agreement: str = "50"  # PhraseBank agreement file: 50, 66, 75 or all
    text_column: str = "text"
    label_column: str = "label"
    test_size: float = 0.2
    validation_size: float = 0.2
    max_posts: int | None = None  # cap on posts for VADER weak labels
    synthetic_posts_per_day: int = 3

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"dataset kind {self.kind!r} is not one of {DATASET_KINDS}")

    def model_dump(self) -> dict[str, Any]:
        return asdict(self)


def load_labelled(spec: DatasetSpec) -> pd.DataFrame:
    """The whole labelled set a spec names (before splitting)."""
    if spec.kind == "phrasebank":
        p = Path(spec.path or "")
        return read_phrasebank(p if p.is_file() else phrasebank_path(p, spec.agreement))
    if spec.kind == "tfns":
        p = Path(spec.path or "")
        return read_tfns(p if p.is_file() else p / "twitter_financial_news_sentiment" / "sent_train.csv")
    if spec.kind == "csv":
        return read_labelled_csv(spec.path, spec.text_column, spec.label_column)
    if spec.kind == "vader_posts":
        from finpulse import storage

        posts = storage.read_frame(spec.path, columns=[spec.text_column])
        texts = posts[spec.text_column].drop_duplicates()
        return vader_labelled(texts.head(spec.max_posts) if spec.max_posts else texts)
    if spec.kind == "vader_synthetic":
        from finpulse.data.synthetic import generate_posts
        from finpulse.resources import load_prices

        posts = generate_posts(load_prices(), posts_per_day=spec.synthetic_posts_per_day, seed=0)
        texts = posts["text"].drop_duplicates()
        return vader_labelled(texts.head(spec.max_posts) if spec.max_posts else texts)
    raise ValueError(f"unknown dataset kind {spec.kind!r}")


def load_splits(spec: DatasetSpec, seed: int = 42) -> Splits:
    """Splits for a spec. TFNS keeps its published validation file as the untouched test set."""
    df = load_labelled(spec)
    if spec.kind == "tfns" and spec.path and not Path(spec.path).is_file():
        s = stratified_split(df, test_size=0.0, validation_size=spec.validation_size, seed=seed)
        valid = read_tfns(Path(spec.path) / "twitter_financial_news_sentiment" / "sent_valid.csv")
        return Splits(train=s.train, validation=s.validation, test=valid)
    return stratified_split(df, spec.test_size, spec.validation_size, seed)
