"""Hyperparameter search for the sentiment fine-tune with Ray Tune (ASHA by default), and the retrain of the best.

Shaped like the forecaster's search (:mod:`finpulse.forecast.tune`, helpers in :mod:`finpulse.tuning`):
configurations are sampled up front with a seed and run as a grid, so ASHA and FIFO can run the same
ones. Each trial is a Tune function trainable running the plain loop (:func:`finpulse.sentiment.loop.fit`)
in its Ray worker process and reporting validation macro-F1 after every epoch, so ASHA (grace period one
epoch) stops the weak ones early; a TorchTrainer per trial would add Ray Train's start-up to every trial.
Every trial is an MLflow child run of one parent run (params, per-epoch metrics); trials ASHA stopped
end KILLED. The best configuration is retrained with Ray Train (:func:`finpulse.sentiment.train.train_sentiment`)
on the same splits, under the same parent, and registered as ``challenger``: promotion to champion
stays the sentiment gate's job (:mod:`finpulse.sentiment.promote`).

Trials select on the validation split only; the test split (TFNS's published validation file for the
shipped corpus) is scored once, by the retrain, so the search never sees it.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, model_validator

from finpulse import tracking
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import Splits
from finpulse.tuning import make_scheduler, plain, run_grid, sample_configs, trial_table

METRIC = "val_macro_f1"


class SearchSpace(BaseModel):
    """Choices (lists) and ranges (tuples) of the searched knobs; ``learning_rate`` is log-uniform."""

    learning_rate: tuple[float, float] = (2e-5, 2e-4)
    epochs: list[int] = [1, 2, 3]
    max_length: list[int] = [32, 64, 96]
    warmup_ratio: tuple[float, float] = (0.0, 0.2)
    batch_size: list[int] = [16, 32]

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        lo, hi = self.learning_rate
        if not 0 < lo <= hi:
            raise ValueError(f"learning_rate range {self.learning_rate} must satisfy 0 < low <= high")
        if not 0 <= self.warmup_ratio[0] <= self.warmup_ratio[1] < 1:
            raise ValueError(f"warmup_ratio range {self.warmup_ratio} must satisfy 0 <= low <= high < 1")
        for name, least in (("epochs", 1), ("max_length", 8), ("batch_size", 1)):
            values = getattr(self, name)
            if not values or min(values) < least:
                raise ValueError(f"{name} choices {values} must be non-empty and each >= {least}")
        return self

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        return sample_configs(self, n, seed, log_fields=("learning_rate",))


class TuneOptions(BaseModel):
    """How the search runs: which configurations (``configs``, else ``num_samples`` drawn from ``space``
    with ``seed``), the scheduler, the resources, the data subset and what is recorded."""

    space: SearchSpace | None = None
    configs: list[dict[str, Any]] | None = None
    num_samples: int = Field(8, ge=1)
    seed: int = 0
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    max_examples: int | None = Field(900, ge=3, description="balanced training subset (None: every example)")
    reuse_actors: bool = True
    retrain: bool = True
    register_model: bool = True


@dataclass
class TuneResult:
    best_config: SentimentTrainConfig
    best_val_macro_f1: float
    trials: pd.DataFrame  # one row per trial, best first
    parent_run_id: str
    wall_s: float
    splits: dict[str, int]
    retrain: dict[str, Any] | None = None  # train_sentiment's summary (model_version, run_id, test, ...)


def best_config(base: SentimentTrainConfig, table: pd.DataFrame, keys: list[str]) -> SentimentTrainConfig:
    """The base with the searched ``keys`` taken from the table's first (best) row."""
    return dataclasses.replace(base, **{k: plain(table[k].iloc[0]) for k in keys})  # by column: a row would upcast ints


def tuning_splits(base: SentimentTrainConfig, max_examples: int | None) -> Splits:
    """The base's splits, cut to a balanced training subset of ``max_examples`` (validation at most as large)."""
    from finpulse.sentiment.datasets import balanced_subset
    from finpulse.sentiment.train import prepare_splits

    splits = prepare_splits(base)
    return balanced_subset(splits, max_examples, base.seed) if max_examples else splits


def _trial(params: dict, train: pd.DataFrame, validation: pd.DataFrame, base: SentimentTrainConfig,
           parent: tracking.RunLogger) -> None:
    """One Tune trial: fine-tune in-process, report every epoch (ASHA decides), log an MLflow child run."""
    from ray import tune

    from finpulse.sentiment.loop import Examples, fit

    config = dataclasses.replace(base, **params["trial"])
    run = tracking.child_run(parent, f"trial-{uuid.uuid4().hex[:6]}", tags={"finpulse.kind": "tune-trial"})
    run.log_params(params["trial"])
    start = time.perf_counter()

    def on_epoch(metrics: dict[str, Any], _folder: Any) -> None:
        epoch = int(metrics["epoch"])
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and k != "epoch"}
        run.log_metrics(scalars, step=epoch)
        if epoch == config.epochs - 1:  # Tune stops a trial at its last report: code after it may never run
            run.end()
        tune.report({**scalars, "epoch": epoch, "mlflow_run_id": run.run_id, "elapsed_s": time.perf_counter() - start})

    result = fit(config, Examples.from_frame(train), Examples.from_frame(validation), on_epoch=on_epoch)
    if len(result.history) < config.epochs:  # early-stopped by patience: ended here, not by ASHA
        run.end()
    # a trial ASHA stops never gets here: the driver ends those runs as KILLED


def _run_trials(splits: Splits, base: SentimentTrainConfig, trials: list[dict], opts: TuneOptions,
                parent: tracking.RunLogger) -> pd.DataFrame:
    sched = make_scheduler(opts.scheduler, max_t=max(int(t.get("epochs", base.epochs)) for t in trials),
                           grace_period=opts.grace_period, reduction_factor=opts.reduction_factor)
    grid = run_grid(_trial, trials, metric=METRIC, mode="max", scheduler=sched, resources={"cpu": opts.cpus_per_trial},
                    tune_options={"max_concurrent_trials": opts.max_concurrent, "reuse_actors": opts.reuse_actors},
                    train=splits.train[["text", "label"]], validation=splits.validation[["text", "label"]],
                    base=base, parent=parent)
    return trial_table(grid, METRIC, "max", best_column=f"best_{METRIC}", epochs_column="epochs_run",
                       also=("val_accuracy",))


def _record_search(parent: tracking.RunLogger, opts: TuneOptions, trials: list[dict], base: SentimentTrainConfig,
                   n: dict[str, int]) -> None:
    parent.log_params({"scheduler": opts.scheduler, "num_samples": len(trials), "seed": opts.seed,
                       "grace_period": opts.grace_period, "reduction_factor": opts.reduction_factor,
                       "max_concurrent": opts.max_concurrent, "cpus_per_trial": opts.cpus_per_trial,
                       "max_examples": opts.max_examples, "model": base.model, "dataset.kind": base.dataset.kind,
                       **{f"n_{k}": v for k, v in n.items()}})
    space = (opts.space or SearchSpace()).model_dump() if opts.configs is None else {"configs": trials}
    parent.log_dict({"space": space, "sampled": trials}, "search_space.json")


def tune_sentiment(base: SentimentTrainConfig | None = None, options: TuneOptions | None = None,
                   splits: Splits | None = None) -> TuneResult:
    """Search (one parent run, a child run per trial), then (``retrain``) fine-tune the best configuration with
    Ray Train on the same splits as a child of the parent and register it as ``challenger``. Ray must be up."""
    from finpulse.sentiment.train import with_tracking_names

    opts = options or TuneOptions()
    base = dataclasses.replace(with_tracking_names(base or SentimentTrainConfig()), cpus_per_worker=opts.cpus_per_trial,
                               threads_per_worker=max(1, int(opts.cpus_per_trial)), register_model=opts.register_model)
    splits = splits or tuning_splits(base, opts.max_examples)
    trials = opts.configs or (opts.space or SearchSpace()).sample(opts.num_samples, opts.seed)
    start = time.perf_counter()
    with tracking.start_run(base.experiment, run_name=f"tune-sentiment-{opts.scheduler}",
                            tags={"finpulse.kind": "tune"}) as parent:
        _record_search(parent, opts, trials, base, splits.sizes())
        table = _run_trials(splits, base, trials, opts, parent)
        killed = tracking.end_unfinished_children(parent.run_id)  # trials ASHA stopped mid-way
        table["stopped_early"] = table["mlflow_run_id"].isin(killed)
        if table[f"best_{METRIC}"].isna().all():
            raise RuntimeError(f"no trial reported {METRIC}: see the trials under MLflow run {parent.run_id}")
        best = best_config(base, table, list(trials[0]))
        result = TuneResult(best, float(table.iloc[0][f"best_{METRIC}"]), table, parent.run_id,
                            time.perf_counter() - start, splits.sizes())
        parent.log_metrics({f"best_{METRIC}": result.best_val_macro_f1, "wall_s": result.wall_s,
                            "trials": len(table), "trials_stopped_early": len(killed)})
        parent.log_dict(best.model_dump(), "best_config.json")
        parent.log_table(table, "trials.csv")
    if opts.retrain:
        result.retrain = _retrain(best, splits, parent.run_id)
    return result


def _retrain(best: SentimentTrainConfig, splits: Splits, parent_run_id: str) -> dict[str, Any]:
    """Ray Train on the best configuration (a child run of the search), registered as challenger when asked."""
    from finpulse.sentiment.datasets import shipped_version
    from finpulse.sentiment.train import train_sentiment

    summary = train_sentiment(dataclasses.replace(best, run_name="tune-best-retrain"), splits,
                              parent_run_id=parent_run_id)
    if best.dataset.kind == "tfns" and not best.dataset.path:  # what the retraining loop compares against
        tracking.annotate_run(summary["run_id"], tags={"labelled_data": shipped_version()})
    tags = {"retrain_run_id": summary["run_id"], "challenger_version": summary["model_version"],
            "registered_model": summary["model"] if summary["model_version"] else None}
    tracking.annotate_run(parent_run_id, metrics={"retrain_test_macro_f1": summary["test"]["macro_f1"]},
                          tags={k: v for k, v in tags.items() if v is not None})
    return summary
