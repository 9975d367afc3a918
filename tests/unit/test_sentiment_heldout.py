"""No training path ever sees a text that an evaluation split holds (issue 8: the eval-sentiment leak).

AllAgree sentences are a subset of 50Agree; TFNS train and valid share a tweet. Splitting each file on
its own trained 50Agree models on AllAgree test sentences. Here every path is checked against every
evaluation split after normalisation, on a small built corpus (always runs) and on the real data.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from finpulse.sentiment import datasets as ds
from finpulse.sentiment.evaluate import evaluation_sets

LABELS = ("neutral", "positive", "negative")


def _write_corpus(root: Path) -> None:
    """50Agree holds every sentence; 66/75/All hold nested subsets (as the real files do); TFNS train
    repeats one valid tweet with other case and spacing."""
    pb = root / ds.PHRASEBANK_DIR
    pb.mkdir(parents=True)
    rows = [(f"Company {i} reports item {i} .", LABELS[i % 3]) for i in range(400)]
    for key, keep in (("50", 1), ("66", 2), ("75", 3), ("all", 4)):
        lines = [f"{t}@{lab}" for i, (t, lab) in enumerate(rows) if i % keep == 0]
        (pb / ds.PHRASEBANK_FILES[key]).write_text("\n".join(lines) + "\n", encoding="latin-1")
    tf = root / ds.TFNS_DIR
    tf.mkdir()
    valid = pd.DataFrame({"text": [f"$T{i} tweet {i}" for i in range(60)], "label": [i % 3 for i in range(60)]})
    train = pd.DataFrame({"text": [f"$S{i} post {i}" for i in range(300)] + ["$t3   TWEET 3"],
                          "label": [i % 3 for i in range(300)] + [0]})
    valid.to_csv(tf / "sent_valid.csv", index=False)
    train.to_csv(tf / "sent_train.csv", index=False)


def _keys(df: pd.DataFrame) -> set[str]:
    return set(df["text"].map(ds.normalise_text))


def _training_paths(root: Path) -> dict[str, pd.DataFrame]:
    """Every way the project trains a sentiment model on these corpora: train + validation texts."""
    out = {}
    for a in ds.PHRASEBANK_FILES:
        for path in (root, ds.phrasebank_path(root, a)):  # the data folder, or the agreement file itself
            s = ds.load_splits(ds.DatasetSpec(kind="phrasebank", path=str(path), agreement=a), seed=7)
            out[f"phrasebank_{a}_{Path(path).name}"] = pd.concat([s.train, s.validation])
    for path in (root, root / ds.TFNS_DIR / "sent_train.csv"):
        s = ds.load_splits(ds.DatasetSpec(kind="tfns", path=str(path)), seed=7)
        out[f"tfns_{Path(path).name}"] = pd.concat([s.train, s.validation])
    bench, _ = ds.benchmark_splits(root, seed=7)
    out["benchmark_combined"] = pd.concat([bench.train, bench.validation])
    return out


def _assert_disjoint(root: Path) -> dict[str, pd.DataFrame]:
    sets = evaluation_sets(root)
    assert set(sets) == {"phrasebank_50agree", "phrasebank_allagree", "tfns_valid"}
    for name, df in _training_paths(root).items():
        assert len(df) > 0
        for ev, test in sets.items():
            overlap = _keys(df) & _keys(test)
            assert not overlap, f"{name} trains on {len(overlap)} texts of {ev}: {sorted(overlap)[:3]}"
    # AllAgree's test split is drawn from the same held-out set as 50Agree's
    assert _keys(sets["phrasebank_allagree"]) <= _keys(sets["phrasebank_50agree"])
    return sets


def test_every_training_path_is_disjoint_from_every_evaluation_split(tmp_path):
    _write_corpus(tmp_path)
    sets = _assert_disjoint(tmp_path)
    assert len(sets["phrasebank_50agree"]) == pytest.approx(80, abs=3)
    # the per-file splits this replaces did leak on the same corpus (so the check above can fail)
    old_50 = ds.stratified_split(ds.read_phrasebank(ds.phrasebank_path(tmp_path, "50")), seed=42)
    old_all = ds.stratified_split(ds.read_phrasebank(ds.phrasebank_path(tmp_path, "all")), seed=42)
    assert _keys(old_50.train) & _keys(old_all.test)


def test_training_seed_does_not_move_the_heldout_set(tmp_path):
    _write_corpus(tmp_path)
    a = ds.load_splits(ds.DatasetSpec(kind="phrasebank", path=str(tmp_path)), seed=1)
    b = ds.load_splits(ds.DatasetSpec(kind="phrasebank", path=str(tmp_path)), seed=2)
    assert _keys(a.test) == _keys(b.test)
    assert _keys(a.validation) != _keys(b.validation)


def test_real_corpora_have_no_leak(shared_data):
    sets = _assert_disjoint(shared_data)
    assert len(sets["tfns_valid"]) == 2388
    assert 900 <= len(sets["phrasebank_50agree"]) <= 1000 and 400 <= len(sets["phrasebank_allagree"]) <= 510
