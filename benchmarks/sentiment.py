"""Sentiment benchmark (make bench-sentiment): quality against FinBERT's published figures and VADER,
and Ray Data scorer throughput against transformers.pipeline on the same 10,000 StockNet tweets.

Quality: the default model (MiniLM-L6, 22.7M parameters) is fine-tuned with Ray Train on the train
splits of PhraseBank 50Agree (FinBERT protocol: 20% test, 20% of the rest validation) and of the
Twitter Financial News train file, then evaluated on the PhraseBank 50Agree and AllAgree test splits
and the TFNS validation file. The PhraseBank test sentences are one held-out set over all agreement
files (AllAgree is a subset of 50Agree), and every evaluation text is removed from training and
validation (``datasets.benchmark_splits``): no test sentence is ever trained on.

Throughput: the Ray Data scorer (actor pool, length-sorted batches, dynamic padding; fp32, bf16
where the CPU has bf16 instructions, and dynamic int8) end to end (actor start-up and Parquet write included) against
``pipeline("text-classification", batch_size=32)`` with the same fine-tuned model, in one run.

    python benchmarks/sentiment.py               # full: a few epochs (minutes to tens of minutes on 2 cores)
    python benchmarks/sentiment.py --quick       # smoke: small subsets, one epoch
    python benchmarks/sentiment.py --model DIR   # skip training, benchmark an existing model folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, print_table, write_result
from _served_model import served_model, served_precision

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import datasets as ds
from finpulse.sentiment.evaluate import (
    PUBLISHED,
    evaluate_sets,
    flat_summary,
    format_table,
    model_predict,
    vader_predict,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def benchmark_splits(data_dir: Path, seed: int, quick: bool) -> tuple[ds.Splits, dict[str, pd.DataFrame]]:
    """Training/validation data (PhraseBank 50Agree + TFNS train) and the three test sets, leak-free."""
    splits, tests = ds.benchmark_splits(data_dir, seed=seed)
    train, val = splits.train, splits.validation
    if quick:
        train, val = train.head(400), val.head(200)
        tests = {k: v.head(300) for k, v in tests.items()}
    return ds.Splits(train=train.reset_index(drop=True), validation=val.reset_index(drop=True),
                     test=tests["phrasebank_50agree"]), tests


def finetune(splits: ds.Splits, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Ray Train fine-tune (no registry); returns the best checkpoint's folder and training stats."""
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.train import fit_with_ray

    cfg = SentimentTrainConfig(epochs=args.epochs, max_length=args.max_length, batch_size=args.batch_size,
                               learning_rate=args.lr, patience=2, num_workers=1, cpus_per_worker=args.cpus,
                               threads_per_worker=args.cpus, register_model=False, seed=args.seed,
                               storage_path=str(Path(tempfile.mkdtemp(prefix="bench-sent-")) / "ray"),
                               run_name="bench-sentiment")
    fitted = fit_with_ray(cfg, splits, Path(args.model_out))
    return str(fitted.model_dir), {"train_seconds": fitted.seconds, "best_epoch": fitted.best["epoch"],
                                   "history": fitted.history, "n_train": len(splits.train),
                                   "n_validation": len(splits.validation),
                                   "config": cfg.model_dump(exclude={"dataset", "storage_path"})}


def stocknet_texts(data_dir: Path, n: int, seed: int) -> list[str]:
    """``n`` StockNet tweets (tokens joined by spaces), sampled with a fixed seed across tickers."""
    frames = []
    for f in sorted((data_dir / "stocknet" / "tweets_preprocessed").glob("*.jsonl")):
        df = pd.read_json(f, lines=True, dtype={"user_id_str": str})
        frames.append(df["text"].map(lambda toks: " ".join(toks) if isinstance(toks, list) else str(toks)))
    texts = pd.concat(frames, ignore_index=True)
    return texts.sample(n=min(n, len(texts)), random_state=seed).tolist()


def pipeline_labels(model_dir: str, texts: list[str], threads: int, max_length: int) -> tuple[list[str], float]:
    import torch
    from transformers import pipeline

    from finpulse.sentiment.model import canonical_label

    torch.set_num_threads(threads)
    clf = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu", batch_size=32)
    clf(texts[:64], truncation=True, max_length=max_length)  # warm-up
    t0 = time.perf_counter()
    out = clf(texts, truncation=True, max_length=max_length)
    seconds = time.perf_counter() - t0
    return [canonical_label(o["label"]) for o in out], len(texts) / seconds


def scorer_run(model_dir: str, texts: list[str], args: argparse.Namespace, *, precision: str,
               num_actors: int, cpus: float, threads: int) -> dict[str, Any]:
    from finpulse.sentiment.score import ScoreOptions, read_scores, score_posts

    posts = pd.DataFrame({"post_id": [str(i) for i in range(len(texts))], "ticker": "X", "text": texts})
    out = tempfile.mkdtemp(prefix="bench-sent-scores-")
    s = score_posts(posts, model_dir, out, ScoreOptions(
        batch_size=args.score_batch_rows, inference_batch_size=32, num_actors=num_actors, num_cpus_per_actor=cpus,
        threads=threads, precision=precision, max_length=args.max_length))
    got = read_scores(out)
    got = got.set_index("post_id").loc[posts["post_id"]]
    return {"texts_per_s": s["texts_per_s"], "seconds": s["seconds"], "labels": got["label"].tolist(),
            "num_actors": num_actors, "cpus_per_actor": cpus, "threads": threads, "precision": precision}


def throughput(model_dir: str, data_dir: Path, args: argparse.Namespace, pb_test: pd.DataFrame) -> dict[str, Any]:
    """Each precision (fp32; bf16 where the CPU has bf16 instructions; int8) in each actor layout,
    end to end through Ray Data, against the pipeline on the same texts. The headline ``ratio`` is the
    fastest precision whose label agreement with the fp32 pipeline is >= 0.98 (the issue's quality
    bar), fp32 when none is; every configuration is in ``runs``."""
    from finpulse.sentiment.model import cpu_has_bf16, load_classifier

    texts = stocknet_texts(data_dir, args.n_texts, args.seed)
    pipe_labels, pipe_tps = pipeline_labels(model_dir, texts, args.cpus, args.max_length)
    precisions = ["fp32", "bf16", "int8"] if cpu_has_bf16() else ["fp32", "int8"]
    layouts = [(1, float(args.cpus), args.cpus), (args.cpus, 1.0, 1)] if args.cpus > 1 else [(1, 1.0, 1)]
    out: dict[str, Any] = {"n_texts": len(texts), "pipeline_texts_per_s": pipe_tps, "cpu_has_bf16": cpu_has_bf16(),
                           "runs": []}
    labels = np.asarray(SENTIMENT_LABELS, dtype=object)
    pb_acc: dict[str, float] = {}
    for precision in precisions:
        best = None
        for actors, cpus, threads in layouts:
            r = scorer_run(model_dir, texts, args, num_actors=actors, cpus=cpus, threads=threads, precision=precision)
            r["agreement"] = float(np.mean(np.asarray(r.pop("labels")) == np.asarray(pipe_labels)))
            out["runs"].append(r)
            if best is None or r["texts_per_s"] > best["texts_per_s"]:
                best = r
        prefix = "scorer" if precision == "fp32" else f"{precision}_scorer"
        out[f"{prefix}_texts_per_s"] = best["texts_per_s"]
        out[f"{prefix}_ratio"] = best["texts_per_s"] / pipe_tps
        out[f"{prefix}_agreement"] = best["agreement"]
        out[f"{prefix}_layout"] = f"{best['num_actors']} actor(s) x {best['threads']} thread(s)"
        # the actors' inference path in-process (no start-up, no I/O), and PhraseBank accuracy at this precision
        clf = load_classifier(model_dir, max_length=args.max_length, precision=precision, threads=args.cpus)
        t0 = time.perf_counter()
        clf.predict_proba(texts)
        out[f"direct_{precision}_texts_per_s"] = len(texts) / (time.perf_counter() - t0)
        out[f"direct_{precision}_ratio"] = out[f"direct_{precision}_texts_per_s"] / pipe_tps
        pred = labels[clf.predict_proba(pb_test["text"].tolist()).argmax(1)]
        pb_acc[precision] = float(np.mean(pred == pb_test["label"].values))
        out[f"{precision}_phrasebank_50agree_accuracy"] = pb_acc[precision]
        if precision != "fp32":
            out[f"{precision}_accuracy_cost_points"] = 100 * (pb_acc["fp32"] - pb_acc[precision])
    ok = [p for p in precisions if out[("scorer" if p == "fp32" else f"{p}_scorer") + "_agreement"] >= 0.98]
    best_name = max(ok or ["fp32"], key=lambda p: out[("scorer" if p == "fp32" else f"{p}_scorer") + "_texts_per_s"])
    key = "scorer" if best_name == "fp32" else f"{best_name}_scorer"
    out.update({"best_config": best_name, "ratio": out[f"{key}_ratio"], "agreement": out[f"{key}_agreement"],
                "best_scorer_texts_per_s": out[f"{key}_texts_per_s"],
                "best_accuracy_cost_points": out.get(f"{best_name}_accuracy_cost_points", 0.0)})
    return out


def untrained_model_dir(path: Path) -> str:
    """The base MiniLM-L6 with a fresh 3-class head saved as a folder: the fine-tuned model's
    architecture, so the same inference cost (for throughput runs that skip the fine-tune)."""
    from finpulse.sentiment.model import load_classifier

    clf = load_classifier("minilm")
    clf.model.save_pretrained(path)
    clf.tokenizer.save_pretrained(path)
    return str(path)


def inprocess_comparison(model_dir: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Headline: the Ray Data scorer against the best single-process scorer, same settings."""
    from _sentiment_throughput import compare_inprocess

    from finpulse.sentiment.model import resolve_precision

    precision = resolve_precision(args.inprocess_precision)
    return compare_inprocess(model_dir, stocknet_texts(data_dir, args.n_texts, args.seed), precision=precision,
                             cpus=args.cpus, reps=args.inprocess_reps, batch=32, max_length=args.max_length,
                             block_rows=args.score_batch_rows)


def benchmarked_as(args: argparse.Namespace) -> str:
    """What this run measured: its own fine-tune (PhraseBank 50Agree + TFNS train) or a given folder."""
    if args.model:
        return f"the model folder {args.model}"
    return (f"MiniLM-L6 fine-tuned here on PhraseBank 50Agree + TFNS train (leak-free benchmark splits), "
            f"{args.epochs} epoch(s){', quick subsets' if args.quick else ''}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--quick", action="store_true", help="subsets and one epoch: a smoke run")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--n-texts", type=int, default=10_000)
    p.add_argument("--score-batch-rows", type=int, default=512)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--model", help="an already fine-tuned model folder: skip training")
    p.add_argument("--model-out", default=str(REPO / ".finpulse" / "bench" / "sentiment-model"))
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-pipeline", action="store_true", help="skip the secondary comparison with the pipeline")
    p.add_argument("--untrained", action="store_true",
                   help="skip the fine-tune: throughput with the same architecture and an untrained head")
    p.add_argument("--merge", action="store_true",
                   help="keep the existing sentiment.json's keys that this run does not produce")
    p.add_argument("--inprocess-reps", type=int, default=3)
    p.add_argument("--inprocess-precision", default="auto", help="precision of the Ray-vs-in-process comparison")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.n_texts = 1, min(args.n_texts, 1000)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        sys.exit(f"data folder {data_dir} not found (development data beside the checkout: ../shared/data)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from finpulse.sentiment.model import load_classifier

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                              "quick": args.quick, "published": PUBLISHED}
    try:
        splits, tests = benchmark_splits(data_dir, args.seed, args.quick)
        if args.model:
            model_dir = args.model
        elif args.untrained:
            model_dir = untrained_model_dir(Path(args.model_out).with_name("untrained-head"))
            result["model_note"] = "untrained 3-class head on MiniLM-L6: same architecture and cost, labels meaningless"
        else:
            model_dir, train_info = finetune(splits, args)
            result["training"] = train_info
        result["model_dir"] = model_dir
        if not args.skip_quality:
            clf = load_classifier(model_dir, max_length=args.max_length)
            quality = evaluate_sets({"model": model_predict(clf), "vader": vader_predict}, tests)
            print(format_table(quality))
            result["quality_detail"] = quality
            result.update(flat_summary(quality))
        if not args.skip_throughput:
            result.update(inprocess_comparison(model_dir, data_dir, args))
        if not (args.skip_throughput or args.skip_pipeline):
            result.update(throughput(model_dir, data_dir, args, tests["phrasebank_50agree"]))
    finally:
        ray.shutdown()
    if args.merge and (RESULTS / "sentiment.json").exists():
        kept = json.loads((RESULTS / "sentiment.json").read_text())
        result = {**kept, **result, "merged_keys_from_earlier_run": sorted(set(kept) - set(result))}
    # after the merge: a run that skipped the throughput part names the kept figure at the served precision
    result["served_model"] = served_model(result, model_dir, precision=served_precision(),
                                          benchmarked=result.get("model_note") or benchmarked_as(args))
    goals = {
        "phrasebank_50agree_accuracy>=0.86": result.get("phrasebank_50agree_accuracy", 0) >= 0.86,
        "phrasebank_allagree_accuracy>=0.97": result.get("phrasebank_allagree_accuracy", 0) >= 0.97,
        "tfns_valid_accuracy>=0.88": result.get("tfns_valid_accuracy", 0) >= 0.88,
        "ratio_vs_inprocess>=0.9": result.get("ratio_vs_inprocess", 0) >= 0.9,
        "ratio>=3": result.get("ratio", 0) >= 3,
        "agreement>=0.98": result.get("agreement", 0) >= 0.98,
        "best_accuracy_cost<=0.5pt": result.get("best_accuracy_cost_points", 99) <= 0.5,
    }
    result["goals_met"] = goals
    path = write_result("sentiment", result)
    keys = ["phrasebank_50agree_accuracy", "phrasebank_50agree_macro_f1", "phrasebank_allagree_accuracy",
            "phrasebank_allagree_macro_f1", "tfns_valid_accuracy", "tfns_valid_macro_f1",
            "vader_phrasebank_50agree_accuracy", "vader_phrasebank_allagree_accuracy", "vader_tfns_valid_accuracy",
            "ratio_vs_inprocess", "ratio_vs_inprocess_spread", "ratio_vs_inprocess_compute", "ratio_vs_inprocess_2x1",
            "scaling_2_actors", "scaling_2_actors_spread", "inprocess_precision",
            "pipeline_texts_per_s", "scorer_texts_per_s", "scorer_ratio", "scorer_agreement",
            "bf16_scorer_texts_per_s", "bf16_scorer_ratio", "bf16_scorer_agreement", "bf16_accuracy_cost_points",
            "int8_scorer_texts_per_s", "int8_scorer_ratio", "int8_scorer_agreement", "int8_accuracy_cost_points",
            "direct_fp32_texts_per_s", "direct_bf16_texts_per_s", "direct_int8_texts_per_s",
            "best_config", "ratio", "agreement", "best_accuracy_cost_points"]
    served = result["served_model"]
    print_table([(k, result[k]) for k in keys if k in result] +
                [(f"served_model {k}", served[k]) for k in ("name", "parameters", "texts_per_s", "precision")] +
                [(k, v) for k, v in PUBLISHED.items()] +
                [(f"goal {k}", v) for k, v in goals.items()], "sentiment benchmark")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
