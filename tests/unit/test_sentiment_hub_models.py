"""ProsusAI/finbert and yiyanghkust/finbert-tone by hub id: their label orders, scoring and fine-tuning from
tiny local models built with exactly their id2label, and the clear failure when one is not local (no hub
download happens here)."""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import constants
from support.tiny_models import build_tiny_model

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import HubModelNotLocal
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.loop import Examples, KeepBest, fit
from finpulse.sentiment.model import HUB_LABEL_ORDERS, canonical_index, load_classifier, resolve_model_dir
from finpulse.sentiment.pretrained import build_model
from finpulse.sentiment.score import score_frame

HUBS = sorted(HUB_LABEL_ORDERS)
MARGIN = 4.0
P_TOP = math.exp(MARGIN) / (math.exp(MARGIN) + 2)  # softmax(margin, 0, 0): the planted label's probability
P_OTHER = 1 / (math.exp(MARGIN) + 2)
TEXTS = ["profit rose strongly", "shares fell", "meeting today", ""]


def test_the_table_holds_the_real_configs():
    """The hub models' config.json id2label, verbatim, and the columns they map to."""
    assert HUB_LABEL_ORDERS == {"ProsusAI/finbert": {0: "positive", 1: "negative", 2: "neutral"},
                                "yiyanghkust/finbert-tone": {0: "Neutral", 1: "Positive", 2: "Negative"}}
    assert canonical_index(HUB_LABEL_ORDERS["ProsusAI/finbert"]) == [1, 2, 0]
    assert canonical_index(HUB_LABEL_ORDERS["yiyanghkust/finbert-tone"]) == [2, 0, 1]


def hub_like(tmp_path, hub: str, planted: str):
    return build_tiny_model(tmp_path / hub.replace("/", "--") / planted, HUB_LABEL_ORDERS[hub], planted=planted,
                            margin=MARGIN)


def assert_planted(frame: pd.DataFrame, planted: str) -> None:
    """Every row: the planted label, its probability in its own canonical column, the others equal."""
    assert (frame["label"] == planted).all()
    for label in SENTIMENT_LABELS:
        np.testing.assert_allclose(frame[f"p_{label}"], P_TOP if label == planted else P_OTHER, rtol=1e-5)
    np.testing.assert_allclose(frame["score"], frame["p_positive"] - frame["p_negative"], atol=1e-9)


@pytest.mark.parametrize("planted", SENTIMENT_LABELS)
@pytest.mark.parametrize("hub", HUBS)
def test_scorer_columns_are_canonical(tmp_path, hub, planted):
    clf = load_classifier(str(hub_like(tmp_path, hub, planted)))
    assert clf.model.config.id2label == HUB_LABEL_ORDERS[hub]  # the model keeps its own order inside
    posts = pd.DataFrame({"post_id": [str(i) for i in range(len(TEXTS))], "ticker": "X", "text": TEXTS})
    frame = score_frame(clf, posts)
    assert list(frame.columns[2:5]) == ["p_negative", "p_neutral", "p_positive"]
    assert_planted(frame, planted)
    assert [p["label"] for p in clf.predict(TEXTS)] == [planted] * len(TEXTS)


def cache_snapshot(cache, hub: str, folder) -> None:
    """Lay ``folder`` out as the Hugging Face cache does after a download (refs/main -> snapshots/<commit>)."""
    repo = cache / f"models--{hub.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.parametrize("hub", HUBS)
def test_hub_id_loads_from_the_local_cache_only(tmp_path, monkeypatch, hub):
    """By hub id, as a user names it: found in the local cache (what `hf download` leaves), never fetched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    cache_snapshot(tmp_path / "cache", hub, hub_like(tmp_path, hub, "negative"))
    folder, version = resolve_model_dir(hub)
    assert version == hub and folder.startswith(str(tmp_path / "cache"))
    clf = load_classifier(hub)
    posts = pd.DataFrame({"post_id": ["a", "b"], "ticker": "X", "text": TEXTS[:2]})
    frame = score_frame(clf, posts)
    assert_planted(frame, "negative")
    assert (frame["scorer"] == hub).all()


@pytest.mark.parametrize("hub", HUBS)
def test_fine_tuning_from_a_hub_model_keeps_the_mapping(tmp_path, hub):
    """The fine-tune starts from the hub model's head put in canonical order: with learning rate 0 the
    saved model predicts exactly what the hub model did, now with canonical id2label in its config."""
    base = hub_like(tmp_path, hub, "positive")
    net, _tok = build_model(str(base))
    assert net.config.id2label == dict(enumerate(SENTIMENT_LABELS))
    np.testing.assert_allclose(net.classifier.bias.detach().numpy(), [0.0, 0.0, MARGIN])
    cfg = SentimentTrainConfig(model=str(base), epochs=1, learning_rate=0.0, batch_size=4, patience=1)
    keep = KeepBest(tmp_path / "tuned")
    train = Examples(["profit rose", "shares fell", "meeting today"] * 2, ["positive", "negative", "neutral"] * 2)
    fit(cfg, train, train, on_epoch=keep)
    saved = json.loads((keep.dest / "config.json").read_text())["id2label"]
    assert saved == {"0": "negative", "1": "neutral", "2": "positive"}
    tuned = load_classifier(str(keep.dest))
    posts = pd.DataFrame({"post_id": [str(i) for i in range(len(TEXTS))], "ticker": "X", "text": TEXTS})
    assert_planted(score_frame(tuned, posts), "positive")


@pytest.mark.parametrize("hub", HUBS)
def test_a_hub_id_not_here_fails_at_once_with_a_clear_error(tmp_path, monkeypatch, hub):
    """Not a folder, not in the cache: an error naming HF_HUB_OFFLINE, at once, even with the variable
    unset (the cache is read with local_files_only: no network call is ever tried)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for load in (load_classifier, build_model, resolve_model_dir):
        t0 = time.perf_counter()
        with pytest.raises(HubModelNotLocal) as err:
            load(hub)
        assert time.perf_counter() - t0 < 5
        text = str(err.value)
        assert "no hub download happens here" in text and "HF_HUB_OFFLINE" in text and hub in text
        assert str(HUB_LABEL_ORDERS[hub]) in text


def test_a_missing_folder_is_reported_the_same_way(tmp_path):
    with pytest.raises(HubModelNotLocal, match="not a local folder"):
        load_classifier(str(tmp_path / "no-such-model"))


def test_cli_reports_a_missing_hub_model_without_a_trace(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from finpulse import cli

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(cli.app, ["eval-sentiment", "--data", str(tmp_path), "--model", "ProsusAI/finbert"])
    assert result.exit_code == 2, result.output
    assert "no hub download happens here" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, HubModelNotLocal)
