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


def _group_labels(key: pd.Series, label: pd.Series) -> pd.DataFrame:
    """One row per key (sorted) with its most frequent label; ties go to the label seen first."""
    rows = pd.DataFrame({"key": key.to_numpy(), "label": label.to_numpy(), "pos": np.arange(len(key))})
    counts = rows.groupby(["key", "label"], sort=False).agg(n=("pos", "size"), first=("pos", "min")).reset_index()
    counts = counts.sort_values(["key", "n", "first"], ascending=[True, False, True], kind="mergesort")
    return counts.drop_duplicates("key")[["key", "label"]].reset_index(drop=True)


def stratified_split(df: pd.DataFrame, test_size: float = 0.2, validation_size: float = 0.2,
                     seed: int = 42) -> Splits:
    """Train/validation/test, stratified by label, duplicates kept on one side, seeded.

    Defaults follow the FinBERT paper: 20% test, then 20% of the rest for validation. Each duplicate
    group takes its most frequent label for stratification; its rows keep their own labels.
    """
    df = df.reset_index(drop=True)
    key = df["text"].map(normalise_text)
    groups = _group_labels(key, df["label"])
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

    kind: DatasetKind = "tfns"  # shipped in the package: works with no data folder
    path: str | None = None
    agreement: str = "50"  # PhraseBank agreement file: 50, 66, 75 or all
    text_column: str = "text"
    label_column: str = "label"
    test_size: float = 0.2
    validation_size: float = 0.2
    max_posts: int | None = None  # cap on posts for VADER weak labels
    synthetic_posts_per_day: int = 3
    split_seed: int = 42  # PhraseBank's held-out set (SPLIT_SEED): eval-sentiment uses the same one

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
        p = Path(spec.path or shipped_root())
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
    """Splits for a spec. PhraseBank and TFNS never train or validate on a text that any evaluation
    split holds (see :func:`heldout_sets`); other kinds are split on their own."""
    root = data_root(spec)
    if spec.kind in ("phrasebank", "tfns") and root is not None:
        return corpus_splits(root, spec.kind, agreement=spec.agreement, seed=seed,
                             validation_size=spec.validation_size, split_seed=spec.split_seed,
                             test_size=spec.test_size)
    return stratified_split(load_labelled(spec), spec.test_size, spec.validation_size, seed)


# ---- one held-out set for every corpus ---------------------------------------------------------------
#
# AllAgree sentences are a subset of 50Agree (and 66/75Agree lie in between), so splitting each
# agreement file on its own puts an AllAgree test sentence into 50Agree's training split. Instead
# one canonical assignment over the union of the agreement files (by normalised text, stratified by
# the 50Agree label, seeded by ``split_seed`` alone) decides each sentence's side, and every file's
# test split is drawn from the same held-out set. TFNS keeps its published validation file as the
# test set. Every training path drops every text that any evaluation split holds.

SPLIT_SEED = 42  # the held-out set's seed: fixed, so a training seed never moves a test sentence
PHRASEBANK_DIR, TFNS_DIR = "financial_phrasebank", "twitter_financial_news_sentiment"


def shipped_root() -> str:
    """The package's data folder: it ships TFNS (MIT), the default labelled corpus; PhraseBank is never shipped."""
    from finpulse.resources import labelled_root

    return labelled_root()


def data_root(spec: DatasetSpec) -> Path | None:
    """The data folder a PhraseBank/TFNS spec points into (a folder, or a file inside it); TFNS without
    a path is the shipped copy."""
    if not spec.path:
        return Path(shipped_root()) if spec.kind == "tfns" else None
    p = Path(spec.path)
    if p.is_file():
        return p.parent.parent if p.parent.name in (PHRASEBANK_DIR, TFNS_DIR) else None
    return p


def phrasebank_sides(data_dir: str | Path, split_seed: int = SPLIT_SEED, test_size: float = 0.2) -> dict[str, str]:
    """``{normalised text: "test" | "rest"}`` over the union of the agreement files present."""
    frames = [read_phrasebank(phrasebank_path(data_dir, a)) for a in PHRASEBANK_FILES
              if phrasebank_path(data_dir, a).is_file()]
    if not frames:
        raise FileNotFoundError(f"no PhraseBank files under {Path(data_dir) / PHRASEBANK_DIR}")
    union = pd.concat(frames, ignore_index=True)  # 50Agree first: its label stratifies a shared sentence
    union = union.assign(key=union["text"].map(normalise_text)).drop_duplicates("key", keep="first")
    is_test = _stratified_take(union.reset_index(drop=True)[["key", "label"]], test_size,
                               np.random.default_rng(split_seed))
    return dict(zip(union["key"], np.where(is_test, "test", "rest"), strict=True))


def heldout_sets(data_dir: str | Path, split_seed: int = SPLIT_SEED, test_size: float = 0.2) -> dict[str, pd.DataFrame]:
    """The evaluation splits: PhraseBank 50Agree and AllAgree test (one held-out set), TFNS validation."""
    root, out = Path(data_dir), {}
    if (root / PHRASEBANK_DIR).is_dir():
        sides = phrasebank_sides(root, split_seed, test_size)
        for name, agreement in (("phrasebank_50agree", "50"), ("phrasebank_allagree", "all")):
            if phrasebank_path(root, agreement).is_file():
                df = read_phrasebank(phrasebank_path(root, agreement))
                out[name] = df[df["text"].map(normalise_text).map(sides) == "test"].reset_index(drop=True)
    valid = root / TFNS_DIR / "sent_valid.csv"
    if valid.is_file():
        out["tfns_valid"] = read_tfns(valid)
    return out


def heldout_keys(sets: dict[str, pd.DataFrame]) -> set[str]:
    return set(pd.concat([df["text"] for df in sets.values()]).map(normalise_text)) if sets else set()


def drop_texts(df: pd.DataFrame, keys: set[str]) -> pd.DataFrame:
    """Rows whose normalised text is not in ``keys``."""
    return df[~df["text"].map(normalise_text).isin(keys)].reset_index(drop=True)


def corpus_splits(data_dir: str | Path, kind: str, *, agreement: str = "50", seed: int = 42,
                  validation_size: float = 0.2, split_seed: int = SPLIT_SEED, test_size: float = 0.2) -> Splits:
    """Train/validation from one corpus with every evaluation text removed; test: that corpus's
    evaluation split (PhraseBank at ``agreement`` in the held-out set, or the TFNS validation file)."""
    root = Path(data_dir)
    sets = heldout_sets(root, split_seed, test_size)
    banned = heldout_keys(sets)
    if kind == "phrasebank":
        df = read_phrasebank(phrasebank_path(root, agreement))
        sides = phrasebank_sides(root, split_seed, test_size)
        test = df[df["text"].map(normalise_text).map(sides) == "test"].reset_index(drop=True)
    elif kind == "tfns":
        df = read_tfns(root / TFNS_DIR / "sent_train.csv")
        test = sets.get("tfns_valid", df.iloc[:0])
    else:
        raise ValueError(f"corpus_splits reads phrasebank or tfns, not {kind!r}")
    rest = stratified_split(drop_texts(df, banned), test_size=0.0, validation_size=validation_size, seed=seed)
    return Splits(train=rest.train, validation=rest.validation, test=test)


def benchmark_splits(data_dir: str | Path, seed: int = 42, tfns_validation_size: float = 0.1) -> tuple[Splits, dict[str, pd.DataFrame]]:
    """The benchmark's training data (PhraseBank 50Agree + TFNS train, every evaluation text removed)
    and the evaluation splits it is scored on."""
    sets = heldout_sets(data_dir)
    pb = corpus_splits(data_dir, "phrasebank", agreement="50", seed=seed)
    tfns = corpus_splits(data_dir, "tfns", seed=seed, validation_size=tfns_validation_size)
    train = pd.concat([pb.train, tfns.train]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    val = pd.concat([pb.validation, tfns.validation]).reset_index(drop=True)
    return Splits(train=train, validation=val, test=sets["phrasebank_50agree"]), sets


def balanced_subset(splits: Splits, examples: int, seed: int = 42) -> Splits:
    """``examples`` training texts in equal shares per class and a validation set of that size at most; the
    test split stays whole. 65% of TFNS is neutral: a short fine-tune on its natural mix learns to answer
    "neutral" (macro-F1 0.26 after one epoch on 800 tweets, below VADER), one on equal shares does not."""
    shuffled = splits.train.sample(frac=1.0, random_state=seed)
    train = shuffled.groupby("label").head(max(1, examples // shuffled["label"].nunique()))
    validation = splits.validation.sample(n=min(len(splits.validation), examples), random_state=seed)
    return Splits(train=train.reset_index(drop=True), validation=validation.reset_index(drop=True), test=splits.test)


def shipped_version() -> str:
    """The shipped training file's content hash: a sentiment model records it (tag ``labelled_data``), and the
    retraining loop trains a new challenger only when the champion learnt from other data."""
    import hashlib

    return hashlib.sha256((Path(shipped_root()) / TFNS_DIR / "sent_train.csv").read_bytes()).hexdigest()[:16]
