"""What a sweep needs to know about each model, without importing torch: its config class (so ``base``
and parameter names are checked: a typo fails before Ray starts), the metrics its trials report,
its run options, and the :class:`Target` its tune module builds (the trainable and the retrain)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finpulse.sweeps.spec import SweepSpec


class ForecasterOptions(BaseModel):
    """Run options of a forecaster sweep: the data and the tuning window (see :mod:`finpulse.forecast.tune`)."""

    model_config = ConfigDict(extra="forbid")
    features: str | None = Field(None, description="ETL output URI (default <data_root>/curated)")
    embedded: bool = Field(False, description="shipped prices + synthetic posts instead of the ETL output")
    tune_end: dt.date | None = Field(None, description="first day tuning never sees (default: base val_end, "
                                                       "else the start of the last 20% of days)")
    test_start: dt.date | None = None
    threads_per_trial: int = Field(1, ge=1)
    reuse_actors: bool = True


class SentimentOptions(BaseModel):
    """Run options of a sentiment sweep: the training subset and how long to wait for a GPU node."""

    model_config = ConfigDict(extra="forbid")
    max_examples: int | None = Field(900, ge=3, description="balanced training subset (null: every example)")
    gpu_wait_s: float = Field(0.0, ge=0, description="with gpus_per_trial: seconds to let an autoscaler add one")
    reuse_actors: bool = True


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    config_name: str
    fields: frozenset[str]
    metrics: tuple[str, ...]
    options: type[BaseModel]
    build: Callable[[dict[str, Any]], Any]  # base dict -> config object (raises on a bad value)


def facts(model: str) -> ModelFacts:
    if model == "forecaster":
        from finpulse.forecast.config import ForecastConfig

        return ModelFacts("ForecastConfig", frozenset(ForecastConfig.model_fields), ("val_loss", "best_val_loss",
                          "train_loss"), ForecasterOptions, lambda base: ForecastConfig(**base))
    from finpulse.sentiment.config import SentimentTrainConfig

    return ModelFacts("SentimentTrainConfig", frozenset(f.name for f in dataclasses.fields(SentimentTrainConfig)),
                      ("val_macro_f1", "val_accuracy", "train_loss"), SentimentOptions,
                      lambda base: SentimentTrainConfig(**base))


def _errors(prefix: str, exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [f"{prefix}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return [f"{prefix}: {exc}"]


def check_for_model(spec: SweepSpec) -> list[str]:
    """Problems of ``spec`` for its model, each naming its field path; empty when it can run."""
    f = facts(spec.model)
    problems = [f"base.{k}: not a field of {f.config_name}" for k in spec.base if k not in f.fields]
    problems += [f"params.{k}: not a field of {f.config_name}" for k in spec.params if k not in f.fields]
    if spec.metric not in f.metrics:
        problems.append(f"metric: the {spec.model} reports {', '.join(f.metrics)}, not {spec.metric!r}")
    if spec.model == "forecaster" and spec.budget.gpus_per_trial:
        problems.append("budget.gpus_per_trial: the LSTM trials run on CPUs (set 0)")
    if spec.scheduler.kind == "median" and spec.budget.samples < 2:
        problems.append("scheduler.kind: median stopping compares trials: budget.samples must be >= 2")
    try:
        f.options(**spec.options)
    except ValidationError as e:
        problems += _errors("options", e)
    if not problems:
        try:
            f.build(dict(spec.base))
        except (ValidationError, ValueError, TypeError) as e:
            problems += _errors("base", e)
    return problems


@dataclasses.dataclass
class Target:
    """What a model's tune module hands the sweep runner: a Tune function trainable and what it needs.

    ``trainable(config, parent=..., **shared)`` trains one configuration and reports ``metric`` every epoch;
    ``retrain(best_params, parent_run_id)`` trains the best with Ray Train and registers it as challenger,
    returning ``(registry label or None, details)``."""

    trainable: Callable[..., None]
    shared: dict[str, Any]
    resources: dict[str, float]
    max_t: int
    experiment: str
    retrain: Callable[[dict[str, Any], str], tuple[str | None, Any]]
    reuse_actors: bool = True
    describe: dict[str, Any] = dataclasses.field(default_factory=dict)


def build_target(spec: SweepSpec, data: Any = None) -> Target:
    """The model's Target; ``data`` is the forecaster's features frame or the sentiment model's Splits
    (None: loaded as ``options`` say)."""
    if spec.model == "forecaster":
        from finpulse.forecast.tune import sweep_target

        return sweep_target(spec, data)
    from finpulse.sentiment.tune import sweep_target as sentiment_target

    return sentiment_target(spec, data)


def trial_run(parent: Any, params: dict[str, Any]) -> Any:
    """Inside a Tune trial: its MLflow child run under the sweep's ``parent``, tagged with the Ray trial id
    (a resumed sweep shows which trials ran again) and holding the searched ``params``."""
    from ray import tune

    from finpulse import tracking

    trial_id = tune.get_context().get_trial_id()
    run = tracking.child_run(parent, f"trial-{trial_id}", tags={"finpulse.kind": "tune-trial",
                                                                "finpulse.trial_id": trial_id})
    run.log_params(params)
    return run
