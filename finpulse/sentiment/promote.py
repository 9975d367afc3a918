"""The sentiment promotion gate: challenger -> champion only on labelled held-out data, with reasons.

Agreement with VADER is not evidence (a model trained on VADER's labels agrees with VADER and is no
better than it), so the gate scores the challenger, the champion and VADER on labelled evaluation sets
no training run ever sees: the shipped TFNS validation file, plus PhraseBank's held-out sentences when
a data folder holding them is given. All three are scored in the same call on the same texts, so their
figures compare under one protocol (``protocol`` hashes the texts and labels). Rules, on every set:
1. the challenger's accuracy and macro-F1 are not worse than VADER's;
2. with a champion, they are not worse than the champion's by more than ``tolerance``.
The decision becomes an MLflow run like the forecaster gate's (``forecast.promote.record_decision``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from finpulse import tracking
from finpulse.forecast.promote import Decision, contenders, record_decision
from finpulse.sentiment import datasets as ds

METRICS = ("accuracy", "macro_f1")


class SentimentGatePolicy(BaseModel):
    tolerance: float = Field(0.0, ge=0, description="how much accuracy/macro-F1 the challenger may lose to the champion")
    eval_examples: int | None = Field(None, ge=30, description="stratified subset per set (quick runs); None = all")
    max_length: int = Field(64, ge=8, description="tokens per text when scoring")
    seed: int = 0


def decide(challenger: Mapping[str, Mapping[str, float]], champion: Mapping[str, Mapping[str, float]] | None,
           vader: Mapping[str, Mapping[str, float]], policy: SentimentGatePolicy) -> Decision:
    """Pure rule over ``{set: {accuracy, macro_f1}}`` for each contender (see the module docstring)."""
    ok, reasons, metrics = True, [], {}
    if not challenger:
        return Decision(False, ["no labelled evaluation set to judge the challenger on"])
    for name, scores in challenger.items():
        for m in METRICS:
            mine, base = scores[m], vader[name][m]
            metrics[f"challenger_{name}_{m}"], metrics[f"vader_{name}_{m}"] = mine, base
            if not math.isfinite(mine) or mine < base:
                ok = False
                reasons.append(f"{name} {m} {mine:.3f} is worse than VADER's {base:.3f}")
            if champion is not None and name in champion:
                theirs = champion[name][m]
                metrics[f"champion_{name}_{m}"] = theirs
                if mine < theirs - policy.tolerance:
                    ok = False
                    reasons.append(f"{name} {m} {mine:.3f} is worse than the champion's {theirs:.3f} "
                                   f"(tolerance {policy.tolerance:.3f})")
    if ok:
        against = "VADER and the champion" if champion is not None else "VADER (no champion yet)"
        reasons.append(f"not worse than {against} on {', '.join(challenger)} (accuracy and macro-F1)")
    return Decision(ok, reasons, metrics=metrics)


def evaluation_sets(data_dir: str | None, policy: SentimentGatePolicy) -> dict[str, pd.DataFrame]:
    """Held-out labelled sets: shipped TFNS validation, and PhraseBank's held-out set when ``data_dir`` has it."""
    sets = dict(ds.heldout_sets(ds.shipped_root()))
    if data_dir:
        sets.update(ds.heldout_sets(data_dir))
    if policy.eval_examples:
        sets = {k: _stratified(v, policy.eval_examples, policy.seed) for k, v in sets.items()}
    return sets


def _stratified(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(df) <= n:
        return df
    frac = n / len(df)
    return (df.groupby("label", group_keys=False).sample(frac=frac, random_state=seed)
            .sort_index().reset_index(drop=True))


def protocol(sets: Mapping[str, pd.DataFrame]) -> str:
    """A key of the texts and labels judged on: figures compare only under the same one."""
    h = hashlib.sha256()
    for name in sorted(sets):
        h.update(name.encode())
        h.update(pd.util.hash_pandas_object(sets[name][["text", "label"]], index=False).values.tobytes())
    return h.hexdigest()[:16]


def score_sets(predict: Callable[[Sequence[str]], np.ndarray], sets: Mapping[str, pd.DataFrame]
               ) -> dict[str, dict[str, float]]:
    """``{set: {accuracy, macro_f1}}`` of one predictor."""
    from finpulse.sentiment.evaluate import classification_metrics

    out = {}
    for name, df in sets.items():
        m = classification_metrics(df["label"], predict(df["text"].tolist()))
        out[name] = {k: float(m[k]) for k in METRICS}
    return out


def _model_scores(spec: str, sets: Mapping[str, pd.DataFrame], max_length: int) -> dict[str, dict[str, float]]:
    from finpulse.sentiment.evaluate import model_predict
    from finpulse.sentiment.model import load_classifier

    return score_sets(model_predict(load_classifier(spec, max_length=max_length)), sets)


def gate(policy: SentimentGatePolicy | None = None, *, data_dir: str | None = None, dry_run: bool = False,
         name: str = tracking.SENTIMENT_MODEL) -> Decision:
    """Judge ``name@challenger`` against ``name@champion`` and VADER; move the champion alias when it passes."""
    from finpulse.sentiment.evaluate import vader_predict

    policy = policy or SentimentGatePolicy()
    challenger, champion = contenders(name)
    if champion is not None and champion.version == challenger.version:
        decision = Decision(False, ["the challenger already is the champion"])
    else:
        sets = evaluation_sets(data_dir, policy)
        mine = _model_scores(challenger.uri, sets, policy.max_length)
        theirs = _model_scores(champion.uri, sets, policy.max_length) if champion else None
        decision = decide(mine, theirs, score_sets(vader_predict, sets), policy)
        decision.metrics["eval_texts"] = float(sum(len(v) for v in sets.values()))
        _annotate(challenger, mine, protocol(sets))
    decision.challenger, decision.champion = challenger.label, champion.label if champion else None
    if decision.promote and not dry_run:
        tracking.set_alias(name, tracking.CHAMPION, challenger.version)
    record_decision(decision, policy.model_dump(), experiment=tracking.SENTIMENT_EXPERIMENT, dry_run=dry_run)
    return decision


def _annotate(ref: tracking.ModelRef, scores: Mapping[str, Mapping[str, float]], key: str) -> None:
    """The gate's figures on the challenger's training run, beside its own test metrics."""
    if ref.run_id:
        metrics: dict[str, Any] = {f"gate_{s}_{m}": v for s, ms in scores.items() for m, v in ms.items()}
        tracking.annotate_run(ref.run_id, metrics=metrics, tags={"gate_protocol": key})
