"""The promotion gate: challenger -> champion only on walk-forward evidence, with reasons recorded.

Rules (``PromotionPolicy``), all on the walk-forward metrics that :func:`evaluate.record_walk_forward`
wrote on each model's training run, under the same evaluation protocol (``wf_key``). ``wf_mae`` is the
MAE of the saved weights themselves on test days that none of their training, validation, calibration
or tuning saw (the evaluation refuses weights that saw them; ``wf_out_of_sample`` records it):
1. the challenger must have been evaluated out of sample (``wf_mae`` and ``wf_out_of_sample`` on its run);
   a leakage alarm (walk-forward directional accuracy above 60%) blocks it unless the data is labelled
   synthetic (a planted signal is meant to be found);
2. it must not be worse than persistence: ``wf_mae <= wf_persistence_mae * (1 + persistence_tolerance)``;
3. with a champion, it must beat the champion's ``wf_mae`` by ``margin`` (relative):
   ``wf_mae <= champion_wf_mae * (1 - margin)``, both measured under the same protocol.
   With no champion yet, rules 1-2 decide (the first model needs only to clear persistence).
The decision and its reasons become an MLflow run (tags, params, ``decision.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, Field

from finpulse import tracking


class PromotionPolicy(BaseModel):
    margin: float = Field(0.0, ge=0, description="relative MAE improvement required over the champion")
    persistence_tolerance: float = Field(0.0, ge=0, description="relative MAE slack allowed above persistence")
    require_same_protocol: bool = True


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    challenger: str | None = None
    champion: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def decide(challenger: dict[str, float], champion: dict[str, float] | None, policy: PromotionPolicy,
           challenger_key: str | None = None, champion_key: str | None = None) -> Decision:
    """Pure rule: metrics dicts hold ``wf_mae`` and ``wf_persistence_mae``."""
    reasons: list[str] = []
    mae = challenger.get("wf_mae", math.nan)
    persist = challenger.get("wf_persistence_mae", math.nan)
    metrics = {"challenger_wf_mae": mae, "persistence_wf_mae": persist}
    if not math.isfinite(mae) or not math.isfinite(persist):
        return Decision(False, ["challenger has no walk-forward evaluation (run `finpulse evaluate` first)"],
                        metrics=metrics)
    if challenger.get("wf_out_of_sample") != 1.0:
        return Decision(False, ["the challenger's weights were not scored out of sample (evaluated by an older "
                                "version): re-run `finpulse evaluate`"], metrics=metrics)
    ok, reasons = _leakage_rule(challenger, reasons)
    limit = persist * (1 + policy.persistence_tolerance)
    if mae <= limit:
        reasons.append(f"walk-forward MAE {mae:.4f} is not worse than persistence {persist:.4f}")
    else:
        ok = False
        reasons.append(f"walk-forward MAE {mae:.4f} is worse than persistence {persist:.4f} (limit {limit:.4f})")
    if champion is None:
        reasons.append("no champion yet: the persistence rule decides")
    else:
        cmae = champion.get("wf_mae", math.nan)
        metrics["champion_wf_mae"] = cmae
        if policy.require_same_protocol and challenger_key != champion_key:
            ok = False
            reasons.append(f"champion was evaluated under another protocol ({champion_key} vs {challenger_key}): "
                           "re-evaluate both on the same walk-forward")
        elif not math.isfinite(cmae):
            reasons.append("champion has no walk-forward MAE: the challenger replaces it on the persistence rule")
        elif mae <= cmae * (1 - policy.margin):
            reasons.append(f"beats the champion's MAE {cmae:.4f} by the margin {policy.margin:.2%}")
        else:
            ok = False
            reasons.append(f"does not beat the champion's MAE {cmae:.4f} by the margin {policy.margin:.2%}")
    return Decision(ok, reasons, metrics=metrics)


def _leakage_rule(challenger: dict[str, float], reasons: list[str]) -> tuple[bool, list[str]]:
    """A directional accuracy above 60% on real data is a leakage alarm: refuse, unless synthetic."""
    if challenger.get("wf_leakage_alarm", 0.0) != 1.0:
        return True, reasons
    acc = challenger.get("wf_leakage_accuracy", challenger.get("wf_directional_accuracy", math.nan))
    if challenger.get("wf_data_synthetic", 0.0) == 1.0:
        return True, [*reasons, f"leakage alarm (a walk-forward LSTM's directional accuracy {acc:.1%} > 60%) waived: "
                                "the posts are labelled synthetic (a planted signal)"]
    return False, [*reasons, f"leakage alarm: a walk-forward LSTM's directional accuracy {acc:.1%} > 60% on real "
                             "data; look for a look-ahead before promoting"]


def promote(name: str = tracking.FORECAST_MODEL, policy: PromotionPolicy | None = None, *,
            experiment: str = tracking.FORECAST_EXPERIMENT, dry_run: bool = False) -> Decision:
    """Apply the gate to ``name@challenger`` vs ``name@champion``; move the alias when it passes."""
    policy = policy or PromotionPolicy()
    challenger, champion = contenders(name)
    if champion is not None and champion.version == challenger.version:
        decision = Decision(False, ["the challenger already is the champion"])
    else:
        decision = decide(_evidence(challenger), _evidence(champion) if champion else None, policy,
                          _protocol(challenger), _protocol(champion) if champion else None)
    decision.challenger, decision.champion = challenger.label, champion.label if champion else None
    if decision.promote and not dry_run:
        tracking.set_alias(name, tracking.CHAMPION, challenger.version)
    record_decision(decision, policy.model_dump(), experiment=experiment, dry_run=dry_run)
    if challenger.run_id:
        tracking.annotate_run(challenger.run_id, tags={"promotion_decision": _verdict(decision)})
    return decision


def contenders(name: str) -> tuple[tracking.ModelRef, tracking.ModelRef | None]:
    """``name@challenger`` (LookupError when none) and ``name@champion`` (None before the first promotion)."""
    challenger = tracking.get_version(name, tracking.CHALLENGER)
    if challenger is None:
        raise LookupError(f"{name} has no {tracking.CHALLENGER} alias: train a model first")
    return challenger, tracking.get_version(name, tracking.CHAMPION)


def _evidence(ref: tracking.ModelRef) -> dict[str, float]:
    """The walk-forward metrics :func:`evaluate.record_walk_forward` wrote on the model's training run."""
    return tracking.run_metrics(ref.run_id) if ref.run_id else {}


def _protocol(ref: tracking.ModelRef) -> str | None:
    """The ``wf_key`` of the evaluation that produced the evidence (MAEs compare only under the same one)."""
    return tracking.run_tags(ref.run_id).get("wf_key") if ref.run_id else None


def _verdict(decision: Decision) -> str:
    return "promote" if decision.promote else "reject"


def record_decision(decision: Decision, policy: dict, *, experiment: str, dry_run: bool) -> None:
    """The decision as its own run: tags (verdict, who, reasons), the policy as params, ``decision.json``
    (both gates, forecaster and sentiment, record this way)."""
    tags = {"finpulse.kind": "promotion", "decision": _verdict(decision), "challenger": decision.challenger,
            "champion": decision.champion or "none"}
    with tracking.start_run(experiment, run_name=f"promote-{decision.challenger}", tags=tags) as run:
        run.log_params({**policy, "dry_run": dry_run})
        run.log_metrics(decision.metrics)
        run.log_dict(asdict(decision), "decision.json")
        run.set_tags({"reasons": json.dumps(decision.reasons)[:5000]})
