"""The sentiment model for the StockNet benchmark: fine-tuned in-process (no Ray) the way the demo's is, and
its tweet scores cached.

``served_model`` fine-tunes the shipped MiniLM on a balanced subset of the shipped TFNS train split (the
served default's recipe: :func:`finpulse.pipeline.train_sentiment`, here through the pure
:func:`finpulse.sentiment.loop.fit`), keeping the best epoch's folder. ``model_scores`` scores each distinct
tweet text once (multi-cashtag tweets and retweets repeat) and caches the probabilities in a Parquet file
keyed by the model and the text set, so a rerun reuses them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def served_model(cache: Path, examples: int = 3000, epochs: int = 2, seed: int = 42) -> tuple[str, dict]:
    """The fine-tuned folder (reused when already there) and what its training reported."""
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.datasets import DatasetSpec, balanced_subset
    from finpulse.sentiment.loop import Examples, KeepBest, fit
    from finpulse.sentiment.train import prepare_splits

    dest = cache / f"tfns-minilm-{examples}x{epochs}-s{seed}"
    report = dest.with_suffix(".json")  # what the fit reported, kept for the reruns that reuse the folder
    if (dest / "config.json").is_file():
        return str(dest), {"reused": True, **(json.loads(report.read_text()) if report.is_file() else {})}
    cfg = SentimentTrainConfig(dataset=DatasetSpec(kind="tfns"), epochs=epochs, max_length=64, batch_size=16,
                               learning_rate=1e-4, seed=seed, threads_per_worker=2, register_model=False)
    splits = balanced_subset(prepare_splits(cfg), examples, seed)
    keep = KeepBest(dest)
    t = time.perf_counter()
    fit(cfg, Examples.from_frame(splits.train), Examples.from_frame(splits.validation), on_epoch=keep)
    info = {"recipe": f"shipped MiniLM, TFNS train split, {examples} balanced examples, {epochs} epochs, max_length 64, "
                      "lr 1e-4, batch 16; best epoch by validation macro-F1", "seconds": time.perf_counter() - t,
            "n_train": len(splits.train), "n_validation": len(splits.validation), "epochs": keep.reports}
    report.write_text(json.dumps(info, default=float))
    return str(dest), info


def _model_key(spec: str) -> str:
    """A folder's key is its weights' hash (a refit gets a new key); a registry spec is its own key."""
    path = Path(spec)
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
    raw = b"".join(w.read_bytes()[-1 << 20:] for w in weights) if weights else spec.encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:12]


def model_scores(posts: pd.DataFrame, spec: str, cache: Path) -> tuple[pd.DataFrame, str]:
    """POST_SCORES rows (post_id, ticker, probabilities, label, score, scorer) for ``posts`` (validated:
    post_id, ticker, text) by the classifier ``spec``; bf16 where the CPU has it, else fp32."""
    from finpulse.data.schemas import SENTIMENT_LABELS
    from finpulse.sentiment.model import cpu_has_bf16, load_classifier

    texts = pd.Series(sorted(set(posts["text"].astype(str))))
    key = hashlib.sha1("\n".join(texts).encode(), usedforsecurity=False).hexdigest()[:12]
    path = cache / f"scores-{_model_key(spec)}-{key}.parquet"
    precision = "bf16" if cpu_has_bf16() else "fp32"
    if path.is_file():
        table = pd.read_parquet(path)
        scorer = str(table["scorer"].iloc[0])
    else:
        clf = load_classifier(spec, max_length=64, batch_size=64, precision=precision, threads=2)
        scorer = f"{clf.version}+{precision}" if precision != "fp32" else clf.version
        t = time.perf_counter()
        probs = clf.predict_proba(texts.tolist())
        print(f"scored {len(texts)} distinct tweet texts in {time.perf_counter() - t:.0f}s ({precision})", flush=True)
        table = pd.DataFrame({"text": texts, "p_negative": probs[:, 0], "p_neutral": probs[:, 1],
                              "p_positive": probs[:, 2], "scorer": scorer})
        cache.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path, index=False)
    out = posts[["post_id", "ticker", "text"]].merge(table, on="text", how="left")
    probs = out[["p_negative", "p_neutral", "p_positive"]].to_numpy(float)
    out["label"] = np.asarray(SENTIMENT_LABELS, dtype=object)[probs.argmax(axis=1)]
    out["score"] = probs[:, 2] - probs[:, 0]
    return out.drop(columns="text"), scorer
