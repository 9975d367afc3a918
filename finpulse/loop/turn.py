"""One turn of the retraining loop: the pipeline's stages as recorded steps, then canary, soak, decision.

sentiment (only when its labelled data changed) -> etl -> score -> etl_with_scores -> train_forecaster
-> evaluate (challenger AND champion, same walk-forward: one protocol key) -> reference (drift statistics
on the challenger's run) -> gate -> canary -> soak -> promoted | rolled back | rejected.

Every step is keyed by its input versions (:class:`~finpulse.loop.steps.Turn`), so a rerun after a crash
reuses what completed. With a running app (``serving``) the challenger is canaried at
``canary_weight`` and soaked; the soak promotes (serving config AND registry alias, recorded) or rolls
back without a person. With no app, a passing gate moves the champion alias (the next start serves it).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from finpulse import pipeline, storage, tracking
from finpulse.loop.steps import StepHook, StepResult, Turn
from finpulse.paths import DataPaths


class LoopOptions(BaseModel):
    """Knobs of a turn (``finpulse pipeline run --options '{...}'``)."""

    sentiment_examples: int = 3000
    sentiment_epochs: int = 2
    sentiment_eval_examples: int | None = None
    forecast_epochs: int = 15
    walk_forward_refits: int = Field(2, ge=1)
    margin: float = Field(0.0, ge=0, description="relative MAE gain the challenger needs over the champion")
    canary_weight: float = Field(0.25, gt=0, le=1)
    soak_s: float = Field(120.0, gt=0, description="how long canary and stable are compared")
    soak_poll_s: float = Field(5.0, gt=0)
    soak_policy: dict[str, Any] = Field(default_factory=dict, description="SoakPolicy fields (min_requests, "
                                                                         "max_p99_ratio, ...); defaults: SoakPolicy's")
    max_attempts: int = Field(3, ge=1, description="tries of an unfinished turn before it is abandoned")

    @classmethod
    def from_pipeline(cls, o: pipeline.PipelineOptions, **overrides: Any) -> LoopOptions:
        return cls(**{"sentiment_examples": o.sentiment_examples, "sentiment_epochs": o.sentiment_epochs,
                      "sentiment_eval_examples": o.sentiment_eval_examples, "forecast_epochs": o.forecast_epochs,
                      "walk_forward_refits": o.walk_forward_refits, **overrides})

    def pipeline(self) -> pipeline.PipelineOptions:
        return pipeline.PipelineOptions(sentiment_examples=self.sentiment_examples,
                                        sentiment_epochs=self.sentiment_epochs,
                                        sentiment_eval_examples=self.sentiment_eval_examples,
                                        forecast_epochs=self.forecast_epochs,
                                        walk_forward_refits=self.walk_forward_refits)


@dataclass
class TurnOutcome:
    """What a turn decided and why, with every step's record (``cached`` when reused after a crash)."""

    turn_id: str
    outcome: str  # promoted | rolled_back | rejected
    reasons: list[str]
    steps: list[StepResult] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


StepObserver = Callable[[StepResult], None]


def fingerprint(*uris: str) -> str:
    """A version of raw inputs: names and sizes of every file under ``uris`` (new live files change it)."""
    h = hashlib.sha256()
    for uri in uris:
        for f in sorted(storage.list_files(uri)) if storage.exists(uri) else []:
            fs, path = storage.filesystem(f)
            h.update(f"{f}:{fs.get_file_info(path).size}".encode())
    return h.hexdigest()[:16]


def _version(name: str, alias: str) -> str | None:
    ref = tracking.get_version(name, alias)
    return ref.version if ref else None


def sentiment_step(o: LoopOptions, serving: Any) -> dict[str, Any]:
    """Retrain sentiment only when the champion learnt from other labelled data; gate; serving follows."""
    from finpulse.sentiment.datasets import shipped_version

    labelled = shipped_version()
    champion = tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHAMPION)
    if champion and champion.run_id and tracking.run_tags(champion.run_id).get("labelled_data") == labelled:
        return {"trained": False, "decision": "kept", "reasons": [f"labelled data {labelled} unchanged since "
                                                                   f"{champion.label}"]}
    result = pipeline.train_sentiment(max_examples=o.sentiment_examples, epochs=o.sentiment_epochs,
                                      gate=o.pipeline().sentiment_gate())
    if result.champion and serving is not None:
        from finpulse.serving import canary

        canary.set_canary(serving, "sentiment", f"{tracking.SENTIMENT_MODEL}/{result.version}", 0.0)
        canary.promote(serving, "sentiment", actor="finpulse pipeline", reason="; ".join(result.reasons))
    return {"trained": True, "model": result.model, "decision": "promote" if result.champion else "reject",
            "reasons": result.reasons, "metrics": result.metrics}


def data_steps(turn: Turn, paths: DataPaths, see: StepObserver) -> str:
    """ETL -> score with the sentiment champion -> ETL with those scores; returns the features version."""
    sentiment = _version(tracking.SENTIMENT_MODEL, tracking.CHAMPION)
    etl = _run(turn, see, "etl", {"raw": fingerprint(paths.raw_prices, paths.raw_posts)},
               lambda: {"version": pipeline.run_etl(paths).version})
    score = _run(turn, see, "score", {"curated": etl.outputs["version"], "sentiment": sentiment},
                 lambda: {"rows": pipeline.score_posts(paths).rows})
    scored = _run(turn, see, "etl_with_scores", {"curated": etl.outputs["version"], "scores": score.key},
                  lambda: {"version": pipeline.run_etl(paths, scores_uri=paths.scores).version})
    return scored.outputs["version"]


def model_steps(turn: Turn, paths: DataPaths, o: LoopOptions, features_version: str, see: StepObserver) -> dict:
    """Train the challenger, evaluate it and the champion on one walk-forward, record its drift reference,
    and apply the gate without moving the alias (the soak decides that)."""
    from finpulse.data.catalog import load_dataset
    from finpulse.forecast.promote import PromotionPolicy, promote

    features = load_dataset(paths.curated, "daily_features", version_id=features_version)
    config, test_start = pipeline.demo_forecast_config(features, o.forecast_epochs)
    trained = _run(turn, see, "train_forecaster", {"features": features_version, "config": _hash(config)},
                   lambda: _train(features, config))
    challenger = f"{tracking.FORECAST_MODEL}/{trained.outputs['version']}"
    champion = _version(tracking.FORECAST_MODEL, tracking.CHAMPION)
    _run(turn, see, "evaluate", {"challenger": challenger, "champion": champion, "features": features_version},
         lambda: _evaluate(features, test_start, o.walk_forward_refits, challenger, champion))
    _run(turn, see, "reference", {"challenger": challenger}, lambda: _reference(paths, features, challenger, test_start))
    gate = _run(turn, see, "gate", {"challenger": challenger, "champion": champion, "margin": o.margin},
                lambda: _decision(promote(policy=PromotionPolicy(margin=o.margin), dry_run=True)))
    return {"challenger": challenger, "version": trained.outputs["version"], "gate": gate}


def _train(features: Any, config: Any) -> dict[str, Any]:
    t = pipeline.train_forecaster(features, config=config)
    ref = tracking.get_version(tracking.FORECAST_MODEL, tracking.CHALLENGER)
    return {"model": t.model, "version": ref.version if ref else None, "run_id": t.run_id, "metrics": t.metrics}


def _evaluate(features: Any, test_start: Any, refits: int, challenger: str, champion: str | None) -> dict:
    out = {}
    for spec in filter(None, [challenger, champion and f"{tracking.FORECAST_MODEL}/{champion}"]):
        ev = pipeline.evaluate_forecaster(features, test_start=test_start, refits=refits, model=spec)
        out[spec] = {"table": ev.table.reset_index().to_dict("records"), "leakage_alarm": ev.leakage_alarm}
    return {"test_start": str(test_start), "evaluations": out}


def _reference(paths: DataPaths, features: Any, challenger: str, before: Any) -> dict[str, Any]:
    from finpulse.monitoring.job import record_references

    return record_references(paths, features, forecaster=challenger, sentiment=pipeline.SENTIMENT_CHAMPION,
                             before=before)


def _decision(decision: Any) -> dict[str, Any]:
    return {"decision": "promote" if decision.promote else "reject", "reasons": list(decision.reasons),
            "metrics": {k: v for k, v in decision.metrics.items() if v == v}}


def _hash(obj: Any) -> str:
    dump = obj.model_dump() if hasattr(obj, "model_dump") else obj.__dict__
    return hashlib.sha256(json.dumps(dump, sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe_step(result: StepResult) -> list[str]:
    """What a console shows of a step: its status, its decision, and why (reused steps say so)."""
    outputs = result.outputs or {}
    note = " (reused: done before the restart)" if result.cached else ""
    decision = f" -> {outputs['decision']}" if outputs.get("decision") else ""
    return [f"[{result.name}] {result.status}{note}{decision}", *(f"    - {r}" for r in outputs.get("reasons", [])[:6])]


def _run(turn: Turn, see: StepObserver, name: str, inputs: dict[str, Any], fn: Callable[[], dict]) -> StepResult:
    result = turn.step(name, inputs, fn)
    see(result)
    return result


def ship(turn: Turn, o: LoopOptions, model: dict, serving: Any, see: StepObserver) -> tuple[str, list[str]]:
    """Canary and soak the challenger that passed the gate (or, with no app, move the alias on the gate)."""
    gate = model["gate"].outputs
    if gate["decision"] != "promote":
        return "rejected", gate["reasons"]
    challenger = model["challenger"]
    if serving is None:
        out = _run(turn, see, "promote", {"challenger": challenger}, lambda: _alias_only(model["version"]))
        return "promoted", [*gate["reasons"], *out.outputs["reasons"]]
    from finpulse.serving import canary

    _run(turn, see, "canary", {"challenger": challenger, "weight": o.canary_weight},
         lambda: {"models": canary.summary(canary.set_canary(serving, "forecast", challenger, o.canary_weight))})
    soaked = _run(turn, see, "soak", {"challenger": challenger, "soak_s": o.soak_s},
                  lambda: _soak(serving, o, turn.parent_run_id))
    outcome = "promoted" if soaked.outputs["applied"] == "promoted" else "rolled_back"
    return outcome, [*gate["reasons"], *soaked.outputs["reasons"]]


def _alias_only(version: str) -> dict[str, Any]:
    tracking.set_alias(tracking.FORECAST_MODEL, tracking.CHAMPION, version)
    return {"decision": "promote", "reasons": ["no serving app to canary: champion alias moved on the gate's "
                                               "verdict (the next start serves it)"]}


def _soak(serving: Any, o: LoopOptions, parent_run_id: str | None) -> dict[str, Any]:
    from finpulse.serving import soak
    from finpulse.serving.soak_sources import default_source

    verdict = soak.soak(serving, "forecast", default_source(serving), soak.SoakPolicy(**o.soak_policy),
                        window_s=o.soak_s, poll_s=o.soak_poll_s,
                        promotion={"actor": "finpulse pipeline", "parent_run_id": parent_run_id})
    out = verdict.to_dict()
    return {**out, "decision": out.get("applied"), "reasons": list(out.get("reasons", []))}


def run_turn(paths: DataPaths, o: LoopOptions, *, trigger: str = "manual", reason: str = "", serving: Any = None,
             on_step: StepObserver | None = None, hook: StepHook | None = None,
             stop: threading.Event | None = None) -> TurnOutcome:
    """One turn (or the rest of an unfinished one); the caller holds the loop lock."""
    from finpulse.config import get_settings
    from finpulse.loop.records import turns_root

    see = on_step or (lambda _r: None)
    turn = Turn.resume_or_start(turns_root(get_settings().home), trigger, reason=reason, stop=stop, hook=hook,
                                max_attempts=o.max_attempts)
    steps: list[StepResult] = []

    def watch(r: StepResult) -> None:
        steps.append(r)
        see(r)

    from finpulse.sentiment.datasets import shipped_version

    _run(turn, watch, "sentiment", {"labelled": shipped_version()}, lambda: sentiment_step(o, serving))
    features_version = data_steps(turn, paths, watch)
    model = model_steps(turn, paths, o, features_version, watch)
    outcome, reasons = ship(turn, o, model, serving, watch)
    turn.finish(outcome, reasons=reasons)
    return TurnOutcome(turn.turn_id, outcome, reasons, steps, turn.summary())
