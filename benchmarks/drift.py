"""Drift detection: calibration (false alarms, power on planted shifts), the job's cost over 1M scored posts,
and the drift between StockNet's 2014 and 2015-16 tweets.

Merges into ``benchmarks/results/pipeline.json`` (other keys of that file are kept):
``drift_false_alarm_rate``, ``drift_power_planted``, ``drift_job_s_1m_posts``, ``stocknet_2014_vs_2015_16``.

    python benchmarks/drift.py [--seeds 200] [--stocknet ../shared/data/stocknet_full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, print_table
from finpulse.monitoring.calibration import feature_rate, post_pool, post_rates
from finpulse.monitoring.drift import DriftConfig, detect
from finpulse.monitoring.reference import build_snapshot
from finpulse.monitoring.streaming import adwin_entry

SHIFTED_POSTS = {"vocabulary_shift": 0.4, "mood_shift": 0.4}


def calibration(seeds: int, embed) -> tuple[dict, dict]:
    """(false-alarm rates, power) for the feature report and the posts report (and MMD alone)."""
    cfg = DriftConfig()
    fa = {"features": {**feature_rate(seeds, n=500, m=500, config=cfg).to_dict(), "n": 500, "m": 500,
                       "features": 10, "tests_per_report": 20}}
    power = {"features_0.5sigma_one_of_10": {**feature_rate(max(20, seeds // 4), shift=0.5, config=cfg).to_dict(),
                                             "n": 500, "m": 500}}
    base, shifted = post_pool({}, 1000, 1, embed), post_pool(SHIFTED_POSTS, 500, 2, embed)
    post_cfg = DriftConfig(permutations=500)
    for name, mmd_only in (("posts_report", False), ("posts_mmd_only", True)):
        f, p = post_rates(base, shifted, max(20, seeds // 2), n=300, config=post_cfg, mmd_only=mmd_only)
        fa[name] = {**f.to_dict(), "n": 300, "m": 300, "encoder": "shipped MiniLM-L6 (mean-pooled)"}
        power[name] = {**p.to_dict(), "n": 300, "m": 300, "shift": SHIFTED_POSTS}
    return fa, power


def job_1m_posts(embed, texts: list[str], repeats: int = 3) -> dict:
    """Wall clock of the drift computation over 1M scored posts: snapshot (class mix, score sample), a
    fixed-size embedding sample through the encoder, ADWIN over all 1M scores in time order, all tests."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    scores = pd.DataFrame({"label": rng.choice(["negative", "neutral", "positive"], n, p=[0.25, 0.45, 0.3]),
                           "score": np.clip(rng.normal(0.05, 0.4, n), -1, 1)})
    ref = build_snapshot(None, None, scores.sample(200_000, random_state=1), embed(texts[:500]), None, seed=1)
    cfg = DriftConfig()
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sample = [texts[i] for i in np.random.default_rng(r).choice(len(texts), cfg.embedding_sample, replace=False)]
        cur = build_snapshot(None, None, scores, embed(sample), None, sample_size=cfg.sample_size, seed=r)
        rep = detect(ref, cur, cfg, [adwin_entry(scores["score"].to_numpy(), cfg.adwin_delta)])
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": [round(t, 3) for t in times], "posts": n,
            "embedding_sample": cfg.embedding_sample, "permutations": cfg.permutations, "tests": rep.meta["tests"],
            "includes": "snapshot of 1M scores + encoder on the sample + ADWIN over 1M + all tests (no I/O)"}


def stocknet_posts(root: Path) -> pd.DataFrame:
    from finpulse.data import sources

    frames = [sources.read_stocknet_jsonl(p.read_bytes(), p.name.split(".")[0], str(p))
              for p in sorted((root / "tweets_raw").glob("*.jsonl.gz"))]
    posts = pd.concat(frames, ignore_index=True).drop_duplicates("post_id")
    posts["created_at"] = sources.parse_created_at(posts["created_at"])
    return posts.dropna(subset=["created_at"]).sort_values("created_at", kind="mergesort").reset_index(drop=True)


def stocknet_drift(root: Path, embed, sample: int = 500) -> dict:
    """2014 tweets (reference) vs 2015-01 .. 2016-03 tweets: VADER class mix and scores (all tweets),
    MiniLM embeddings of ``sample`` tweets per side, ADWIN over the later tweets in time order."""
    from finpulse.data.vader import label_from_compound, vader_compound

    posts = stocknet_posts(root)
    posts["score"] = vader_compound(posts["text"])
    posts["label"] = label_from_compound(posts["score"].to_numpy())
    early = posts[posts["created_at"] < pd.Timestamp("2015-01-01", tz="UTC")]
    late = posts[posts["created_at"] >= pd.Timestamp("2015-01-01", tz="UTC")]
    snaps = []
    for part, seed in ((early, 1), (late, 2)):
        idx = np.sort(np.random.default_rng(seed).choice(len(part), min(sample, len(part)), replace=False))
        snaps.append(build_snapshot(None, None, part[["label", "score"]], embed(part["text"].iloc[idx].tolist()),
                                    None, sample_size=2000, seed=seed))
    cfg = DriftConfig()
    rep = detect(snaps[0], snaps[1], cfg, [adwin_entry(late["score"].to_numpy(), cfg.adwin_delta)])
    entries = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in
                {"signal": e.signal, "feature": e.feature, "test": e.test, "score": e.score, "p_value": e.p_value,
                 "alarm": e.alarm}.items()} for e in rep.entries]
    share = rep.entry("sentiment", "class_mix", "chi2").detail["share_reference_current"]
    return {"alarm": rep.alarm, "reasons": rep.reasons, "entries": entries, "tweets_2014": len(early),
            "tweets_2015_16": len(late), "class_share_2014_vs_2015_16": share, "embedding_sample": sample,
            "scorer": "VADER", "encoder": "shipped MiniLM-L6 (mean-pooled)"}


def merge_results(update: dict) -> Path:
    path = RESULTS / "pipeline.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(update)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--stocknet", default=str(Path(__file__).resolve().parents[2] / "shared/data/stocknet_full"))
    args = parser.parse_args()
    from finpulse.sentiment.model import load_classifier

    embed = load_classifier("minilm", batch_size=64).embed
    t0 = time.time()
    fa, power = calibration(args.seeds, embed)
    texts = stocknet_posts(Path(args.stocknet))["text"].tolist() if Path(args.stocknet).is_dir() else \
        [f"$T{i % 50} looking good today, number {i}" for i in range(5000)]
    job = job_1m_posts(embed, texts)
    stock = stocknet_drift(Path(args.stocknet), embed) if Path(args.stocknet).is_dir() else {"skipped": "no data"}
    path = merge_results({"drift_false_alarm_rate": fa, "drift_power_planted": power, "drift_job_s_1m_posts": job,
                          "stocknet_2014_vs_2015_16": stock})
    rows = [(f"false alarms: {k}", f"{v['rate']:.3f} ({v['alarms']}/{v['seeds']})") for k, v in fa.items()]
    rows += [(f"power: {k}", f"{v['rate']:.3f} ({v['alarms']}/{v['seeds']})") for k, v in power.items()]
    rows += [("job s, 1M posts (median of 3)", job["median_s"]), ("stocknet 2014 vs 2015-16 alarm", stock.get("alarm"))]
    print_table(rows, f"drift (alpha 0.05; {time.time() - t0:.0f} s) -> {path}")
    for reason in stock.get("reasons", []):
        print("  stocknet:", reason)


if __name__ == "__main__":
    main()
