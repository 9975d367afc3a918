"""Ray Data scorer against the strongest single-process scorer (used by benchmarks/sentiment.py).

Both sides do the same job end to end: texts in memory -> load the model (same folder, same
precision, micro-batch size, maximum length and torch thread budget) -> length-sorted, dynamically
padded inference -> Parquet in the POST_SCORES schema. The in-process side runs in a fresh Python
process (interpreter start, imports, model load, scoring of all texts sorted by length at once, the
write), because each Ray actor pays the same start-up; it also reports its compute-only rate (model
loaded, ``predict_proba`` alone), the ceiling neither side can beat. The Ray side is
``finpulse.sentiment.score.score_posts`` (what ``finpulse score`` runs), timed around the call.

Runs alternate (in-process, Ray 1x2, Ray 2x1, Ray 1x1) ``reps`` times; medians and spreads.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd


def posts_frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"post_id": [str(i) for i in range(len(texts))], "ticker": "X", "text": texts})


def inprocess_job(texts_file: str, model_dir: str, precision: str, threads: int, batch: int, max_length: int,
                  out_file: str) -> dict[str, float]:
    """The single-process scorer (run in a fresh process by :func:`inprocess_run`)."""
    import pyarrow.parquet as pq

    from finpulse.data.schemas import POST_SCORES, to_table
    from finpulse.sentiment.model import load_classifier
    from finpulse.sentiment.score import score_frame

    posts = posts_frame(json.loads(Path(texts_file).read_text()))
    clf = load_classifier(model_dir, max_length=max_length, batch_size=batch, precision=precision, threads=threads)
    t0 = time.perf_counter()
    scores = score_frame(clf, posts)
    compute_s = time.perf_counter() - t0
    pq.write_table(to_table(scores, POST_SCORES), out_file)
    return {"compute_texts_per_s": len(posts) / compute_s}


def inprocess_run(texts_file: str, n: int, model_dir: str, precision: str, threads: int, batch: int,
                  max_length: int) -> dict[str, Any]:
    out = str(Path(tempfile.mkdtemp(prefix="bench-inproc-")) / "scores.parquet")
    args = [texts_file, model_dir, precision, threads, batch, max_length, out]
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"from _sentiment_throughput import inprocess_job; print(json.dumps(inprocess_job(*{args!r})))")
    cmd = [sys.executable, "-c", code]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: S603 - this Python, argv built here, no shell
    seconds = time.perf_counter() - t0
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"layout": f"in-process x {threads} threads", "texts_per_s": n / seconds, "seconds": seconds, **inner}


def ray_run(posts: pd.DataFrame, model_dir: str, precision: str, actors: int, threads: int, batch: int,
            max_length: int, block_rows: int) -> dict[str, Any]:
    from finpulse.sentiment.score import ScoreOptions, score_posts

    out = tempfile.mkdtemp(prefix="bench-ray-scores-")
    t0 = time.perf_counter()
    s = score_posts(posts, model_dir, out, ScoreOptions(
        batch_size=block_rows, inference_batch_size=batch, num_actors=actors, num_cpus_per_actor=float(threads),
        threads=threads, precision=precision, max_length=max_length))
    seconds = time.perf_counter() - t0
    if s["rows"] != len(posts):
        raise RuntimeError(f"scored {s['rows']} of {len(posts)} posts: {s}")
    return {"layout": f"ray {actors} actor(s) x {threads} thread(s)", "texts_per_s": len(posts) / seconds,
            "seconds": seconds, "execution_s": s["seconds"]}


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compare_inprocess(model_dir: str, texts: list[str], *, precision: str, cpus: int, reps: int, batch: int,
                      max_length: int, block_rows: int) -> dict[str, Any]:
    """Interleaved repeats; ratios per repeat (Ray layout / the in-process run of the same repeat)."""
    load_before = os.getloadavg()
    texts_file = str(Path(tempfile.mkdtemp(prefix="bench-texts-")) / "texts.json")
    Path(texts_file).write_text(json.dumps(texts))
    posts = posts_frame(texts)
    layouts = {"1x2": (1, cpus), "2x1": (cpus, 1), "1x1": (1, 1)} if cpus > 1 else {"1x1": (1, 1)}
    runs: list[dict[str, Any]] = []
    per: dict[str, list[float]] = {"inprocess": [], "inprocess_compute": [], **{k: [] for k in layouts}}
    for rep in range(reps):
        r = inprocess_run(texts_file, len(texts), model_dir, precision, cpus, batch, max_length)
        runs.append({"rep": rep, **r})
        per["inprocess"].append(r["texts_per_s"])
        per["inprocess_compute"].append(r["compute_texts_per_s"])
        for name, (actors, threads) in layouts.items():
            r = ray_run(posts, model_dir, precision, actors, threads, batch, max_length, block_rows)
            runs.append({"rep": rep, **r})
            per[name].append(r["texts_per_s"])
        print(f"  rep {rep}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in per.items()), flush=True)
    same = "1x2" if "1x2" in layouts else "1x1"
    ratio = [a / b for a, b in zip(per[same], per["inprocess"], strict=True)]
    out: dict[str, Any] = {
        "ratio_vs_inprocess": statistics.median(ratio), "ratio_vs_inprocess_spread": max(ratio) - min(ratio),
        "ratio_vs_inprocess_compute": statistics.median(
            a / b for a, b in zip(per[same], per["inprocess_compute"], strict=True)),
        "inprocess_precision": precision, "inprocess_threads": cpus, "inprocess_reps": reps,
        "inprocess_n_texts": len(texts), "inprocess_block_rows": block_rows,
        "texts_per_s": {k: _stats(v) for k, v in per.items()}, "inprocess_runs": runs,
        "inprocess_loadavg_before_after": [load_before, os.getloadavg()],
    }
    if "2x1" in layouts:
        two = [a / b for a, b in zip(per["2x1"], per["1x1"], strict=True)]
        vs = [a / b for a, b in zip(per["2x1"], per["inprocess"], strict=True)]
        out.update({"scaling_2_actors": statistics.median(two), "scaling_2_actors_spread": max(two) - min(two),
                    "ratio_vs_inprocess_2x1": statistics.median(vs)})
    return out
