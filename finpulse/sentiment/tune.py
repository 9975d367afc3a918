"""The sentiment model's side of a sweep (:mod:`finpulse.sweeps`): the Tune trial and the retrain of the best.

Each trial is a Tune function trainable running the plain loop (:func:`finpulse.sentiment.loop.fit`) in its
Ray worker process (on its GPU when the sweep gives trials one) and reporting validation macro-F1 after every
epoch, so a scheduler stops the weak ones early; a TorchTrainer per trial would add Ray Train's start-up to
every trial. Every trial is an MLflow child run of the sweep's parent run (params, per-epoch metrics); trials
a scheduler stopped end KILLED. The best configuration is retrained with Ray Train
(:func:`finpulse.sentiment.train.train_sentiment`) on the same splits, under the same parent, and registered as
``challenger``: promotion to champion stays the sentiment gate's job (:mod:`finpulse.sentiment.promote`).

Trials select on the validation split only; the test split (TFNS's published validation file for the
shipped corpus) is scored once, by the retrain, so the search never sees it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pandas as pd

from finpulse import tracking
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import Splits
from finpulse.sweeps.models import SentimentOptions, Target, trial_run
from finpulse.sweeps.space import active
from finpulse.sweeps.spec import SweepSpec


def tuning_splits(base: SentimentTrainConfig, max_examples: int | None) -> Splits:
    """The base's splits, cut to a balanced training subset of ``max_examples`` (validation at most as large)."""
    from finpulse.sentiment.datasets import balanced_subset
    from finpulse.sentiment.train import prepare_splits

    splits = prepare_splits(base)
    return balanced_subset(splits, max_examples, base.seed) if max_examples else splits


def _trial(params: dict, train: pd.DataFrame, validation: pd.DataFrame, base: SentimentTrainConfig,
           parent: tracking.RunLogger) -> None:
    """One Tune trial: fine-tune in-process, report every epoch (the scheduler decides), log an MLflow child run."""
    import torch
    from ray import tune

    from finpulse.sentiment.loop import Examples, Worker, fit

    searched = active(params)
    config = dataclasses.replace(base, **searched)
    run = trial_run(parent, searched)
    start = time.perf_counter()

    def on_epoch(metrics: dict[str, Any], _folder: Any) -> None:
        epoch = int(metrics["epoch"])
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and k != "epoch"}
        run.log_metrics(scalars, step=epoch)
        if epoch == config.epochs - 1:  # Tune stops a trial at its last report: code after it may never run
            run.end()
        tune.report({**scalars, "epoch": epoch, "mlflow_run_id": run.run_id, "elapsed_s": time.perf_counter() - start})

    device = "cuda" if config.use_gpu and torch.cuda.is_available() else "cpu"
    result = fit(config, Examples.from_frame(train), Examples.from_frame(validation), on_epoch=on_epoch,
                 worker=Worker(device=device))
    if len(result.history) < config.epochs:  # early-stopped by patience: ended here, not by the scheduler
        run.end()
    # a trial the scheduler stops never gets here: the driver ends those runs as KILLED


def sweep_target(spec: SweepSpec, splits: Splits | None = None) -> Target:
    """The sentiment model's Target: trials on ``splits`` (default: the base's data cut to ``max_examples``),
    one GPU each when ``gpus_per_trial`` (checked at once, or after ``gpu_wait_s`` for an autoscaler)."""
    from finpulse.runtime import require_gpus
    from finpulse.sentiment.train import with_tracking_names

    opts = SentimentOptions(**spec.options)
    budget = spec.budget
    base = with_tracking_names(SentimentTrainConfig(**spec.base))
    base = dataclasses.replace(base, cpus_per_worker=budget.cpus_per_trial, use_gpu=budget.gpus_per_trial > 0,
                               threads_per_worker=max(1, int(budget.cpus_per_trial)), gpu_wait_s=opts.gpu_wait_s,
                               **({"epochs": budget.max_epochs} if budget.max_epochs else {}))
    require_gpus(budget.gpus_per_trial, "this sweep's trials", wait_s=opts.gpu_wait_s)
    splits = splits or tuning_splits(base, opts.max_examples)
    max_t = int(spec.params["epochs"].highest()) if "epochs" in spec.params else base.epochs

    def retrain(best: dict[str, Any], parent_run_id: str) -> tuple[str | None, Any]:
        summary = _retrain(dataclasses.replace(base, **best), splits, parent_run_id)
        return (summary["model"] if summary.get("model_version") else None), summary

    return Target(_trial, {"train": splits.train[["text", "label"]], "validation": splits.validation[["text", "label"]],
                           "base": base},
                  {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial}, max_t, base.experiment, retrain,
                  opts.reuse_actors, {f"n_{k}": v for k, v in splits.sizes().items()})


def _retrain(best: SentimentTrainConfig, splits: Splits, parent_run_id: str) -> dict[str, Any]:
    """Ray Train on the best configuration (a child run of the sweep), registered as challenger."""
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
