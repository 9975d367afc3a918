"""Fine-tune a BERT-family classifier into a 3-class sentiment model with Ray Train.

A thin shell around :func:`finpulse.sentiment.loop.fit`, shaped like the forecaster's: Ray Train
(V2 TorchTrainer) supplies the workers, DDP and fault tolerance; the data reaches them as Ray
Datasets (``train`` split across workers with equal shards, ``validation`` read whole by rank 0);
each epoch's checkpoint (:mod:`finpulse.checkpoints` contract: Hugging Face ``model/`` + ``meta.json``)
is reported to Ray Train. With ``max_failures`` a killed worker makes Ray Train restart the group,
and the loop resumes from ``ray.train.get_checkpoint()``: the epoch after it, with its history and
early-stopping state.

MLflow, the forecaster's way: the driver opens the run (:func:`finpulse.tracking.start_run`) and
hands its picklable ``RunLogger`` to the workers; rank 0 logs each epoch's metrics (``step=epoch``);
the driver logs params, the test metrics, confusion matrices and the model, and registers it.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finpulse import checkpoints, tracking
from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.progress import epoch_bar
from finpulse.runtime import require_gpus, sigint_restored
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.datasets import Splits
from finpulse.sentiment.loop import MODEL_SUBDIR, SOFT_COLUMNS, Examples, Worker, fit
from finpulse.storage import RayStorage, ray_storage

__all__ = ["RayFit", "SentimentTrainConfig", "fit_with_ray", "scaling_config", "train_sentiment"]

# Called on every rank after each epoch's report with the epoch's metrics plus ``rank``, ``world_size``
# and ``resume_points`` (the forecaster's worker hook has the same shape; tests inject faults with it).
WorkerHook = Callable[[dict[str, Any]], None]


@dataclass
class RayFit:
    """The best epoch of a Ray Train run, copied out of Ray's storage."""

    model_dir: Path  # the best epoch's Hugging Face folder
    best: dict[str, Any]  # that epoch's meta.json (epoch, history so far, confusion matrix, ...)
    history: list[dict[str, Any]] = field(default_factory=list)  # every epoch, from the last checkpoint
    resume_points: list[int] = field(default_factory=list)  # epochs a restarted worker group resumed at
    seconds: float = 0.0


def with_tracking_names(config: SentimentTrainConfig) -> SentimentTrainConfig:
    """The config with the registry/experiment names it leaves open taken from :mod:`finpulse.tracking`."""
    return dataclasses.replace(config, registered_model_name=config.registered_model_name or tracking.SENTIMENT_MODEL,
                               alias=config.alias or tracking.CHALLENGER,
                               experiment=config.experiment or tracking.SENTIMENT_EXPERIMENT)


# ---- the worker ------------------------------------------------------------------------------------

def _shard_examples(shard: Any) -> Examples:
    """A dataset shard as lists, in the driver's row order (Ray Data may hand blocks over in any order)."""
    import pandas as pd

    frames = list(shard.iter_batches(batch_format="pandas", batch_size=None))
    return Examples.from_frame(pd.concat(frames, ignore_index=True).sort_values("row"))


def _epoch_reporter(loop_cfg: dict[str, Any], rank: int, world_size: int,
                    resume_points: list[int]) -> Callable[[dict[str, Any], Path | None], None]:
    """The loop's epoch callback in a Ray worker: report (with rank 0's checkpoint), log, progress, hook."""
    import ray.train

    logger: tracking.RunLogger | None = loop_cfg.get("logger")
    progress, hook = loop_cfg.get("progress"), loop_cfg.get("worker_hook")

    def on_epoch(metrics: dict[str, Any], folder: Path | None) -> None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        ray.train.report(scalars, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)
        if rank == 0:
            if logger is not None:
                logger.log_metrics({k: v for k, v in scalars.items() if k != "epoch"}, step=int(metrics["epoch"]))
            if progress is not None:
                progress(scalars)  # the driver's epoch bar
        if hook is not None:
            hook({**scalars, "rank": rank, "world_size": world_size, "resume_points": list(resume_points)})

    return on_epoch


def train_loop_per_worker(loop_cfg: dict[str, Any]) -> None:
    """The Ray Train worker function: this rank's shard into :func:`fit`, resuming from Ray's checkpoint."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    train = _shard_examples(ray.train.get_dataset_shard("train"))
    validation = _shard_examples(ray.train.get_dataset_shard("validation")) if rank == 0 else Examples([], [])
    worker = Worker(rank, world_size, ray.train.torch.get_device(), ray.train.torch.prepare_model)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        fit(loop_cfg["config"], train, validation, on_epoch=_epoch_reporter(loop_cfg, rank, world_size, []),
            worker=worker)
        return
    with checkpoint.as_directory() as resume:  # a restarted group continues after the last epoch
        meta = checkpoints.read_meta(resume)
        points = [*meta.get("resume_points", []), int(meta["epoch"]) + 1]
        fit(loop_cfg["config"], train, validation, on_epoch=_epoch_reporter(loop_cfg, rank, world_size, points),
            worker=worker, resume=resume)


# ---- the driver ------------------------------------------------------------------------------------

def prepare_splits(config: SentimentTrainConfig) -> Splits:
    from finpulse.sentiment.datasets import load_splits

    splits = load_splits(config.dataset, seed=config.seed)
    if config.max_train_examples:
        splits.train = splits.train.head(config.max_train_examples)
    return splits


def _datasets(splits: Splits) -> dict[str, Any]:
    """Train and validation as Ray Datasets (in the object store, not inside the workers' config)."""
    import numpy as np
    import ray.data

    def frame(df: Any) -> Any:
        cols = ["text", "label", *[c for c in SOFT_COLUMNS if c in df.columns]]
        return df[cols].astype({"text": str}).assign(row=np.arange(len(df))).reset_index(drop=True)

    return {"train": ray.data.from_pandas(frame(splits.train)),
            "validation": ray.data.from_pandas(frame(splits.validation))}


def scaling_config(config: SentimentTrainConfig) -> Any:
    """Ray Train's resources: ``num_workers`` workers of ``cpus_per_worker`` CPUs, one GPU each with
    ``use_gpu`` (then ``ray.train.torch.get_device()`` is that worker's cuda device and the loop's
    ``prepare_model`` moves the model there)."""
    import ray.train

    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    return ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                   resources_per_worker=resources)


def _trainer(config: SentimentTrainConfig, loop_cfg: dict[str, Any], datasets: dict[str, Any],
             storage: RayStorage) -> Any:
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=scaling_config(config),
        run_config=ray.train.RunConfig(
            name=config.run_name or f"sentiment-{int(time.time())}",
            **storage.run_config_args(),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_macro_f1",
                                                         checkpoint_score_order="max"),
        ),
    )


def _best_checkpoint(result: Any) -> tuple[Any, dict[str, Any]]:
    """The kept checkpoint with the best validation macro-F1 (the earlier epoch on a tie), by its meta.json."""
    candidates = [c for c, _m in (result.best_checkpoints or [])] or ([result.checkpoint] if result.checkpoint else [])
    if not candidates:
        raise RuntimeError(f"training produced no checkpoint: {result.error}")
    metas = []
    for c in candidates:
        with c.as_directory() as d:
            metas.append(checkpoints.read_meta(d))
    best = max(range(len(candidates)), key=lambda i: (_f1_of(metas[i]), -metas[i]["epoch"]))
    return candidates[best], metas[best]


def _f1_of(meta: dict[str, Any]) -> float:
    return next(h["val_macro_f1"] for h in meta["history"] if h["epoch"] == meta["epoch"])


def require_train_gpus(config: SentimentTrainConfig) -> None:
    """With ``use_gpu``: one GPU per worker on the cluster (after ``gpu_wait_s``), else GpuUnavailable now."""
    if config.use_gpu:
        require_gpus(config.num_workers, f"train-sentiment --use-gpu ({config.num_workers} worker(s))",
                     wait_s=config.gpu_wait_s)


def fit_with_ray(config: SentimentTrainConfig, splits: Splits, model_dir: str | Path, *,
                 logger: tracking.RunLogger | None = None, worker_hook: WorkerHook | None = None) -> RayFit:
    """Run the TorchTrainer (Ray must be up); copy the best epoch's model folder to ``model_dir``.

    With ``use_gpu`` the cluster must have a GPU per worker (after ``gpu_wait_s`` for an autoscaler):
    otherwise :class:`finpulse.runtime.GpuUnavailable` at once, not a trainer pending forever."""
    require_train_gpus(config)
    loop_cfg = {"config": config, "logger": logger, "worker_hook": worker_hook}
    t0 = time.perf_counter()
    with epoch_bar("sentiment (Ray Train)", config.epochs) as sink, sigint_restored():
        storage = ray_storage(config.storage_path)  # None: FINPULSE_RAY_STORAGE_PATH
        trainer = _trainer(config, {**loop_cfg, "progress": sink}, _datasets(splits), storage)
        with storage.reaching("training the sentiment model"):
            result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.error:
        raise RuntimeError(f"sentiment training failed: {result.error}") from result.error
    ckpt, best = _best_checkpoint(result)
    model_dir = Path(model_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    with ckpt.as_directory() as d:
        shutil.copytree(Path(d) / MODEL_SUBDIR, model_dir)
    with result.checkpoint.as_directory() as d:
        last = checkpoints.read_meta(d)
    return RayFit(model_dir, best, last["history"], last.get("resume_points", []), seconds)


def _params(config: SentimentTrainConfig, splits: Splits) -> dict[str, Any]:
    params = config.model_dump(exclude={"dataset"})
    params.update({f"dataset.{k}": v for k, v in config.dataset.model_dump().items()})
    params.update({f"n_{k}": v for k, v in splits.sizes().items()})
    return {k: str(v)[:500] for k, v in params.items()}


def _log_results(logger: tracking.RunLogger, summary: dict[str, Any], best: dict[str, Any]) -> None:
    """The driver's share of the run: final metrics, confusion matrices, the metrics file."""
    from finpulse.sentiment.evaluate import confusion_matrix_figure

    test = summary["test"]
    logger.log_metrics({"best_epoch": float(summary["best_epoch"]), "train_seconds": summary["train_seconds"],
                        "best_val_macro_f1": summary["val_macro_f1"], "best_val_accuracy": summary["val_accuracy"],
                        "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                        **{f"test_f1_{c}": test[f"f1_{c}"] for c in SENTIMENT_LABELS}})
    logger.log_figure(confusion_matrix_figure(best["val_confusion_matrix"], "validation (best epoch)"),
                      "confusion_matrix_validation.png")
    logger.log_figure(confusion_matrix_figure(test["confusion_matrix"], "test"), "confusion_matrix_test.png")
    logger.log_dict({"history": summary["history"], "test": test}, "sentiment_metrics.json")


def _summary(fitted: RayFit, splits: Splits, test: dict[str, Any]) -> dict[str, Any]:
    best_epoch = fitted.best["epoch"]
    best = next(h for h in fitted.best["history"] if h["epoch"] == best_epoch)
    return {"best_epoch": best_epoch, "epochs_run": len(fitted.history), "train_seconds": fitted.seconds,
            "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"], "test": test,
            "history": fitted.history, "resume_points": fitted.resume_points,
            "train_rows_per_worker": fitted.best.get("train_rows"), "splits": splits.sizes(),
            "model_dir": str(fitted.model_dir)}


def train_sentiment(config: SentimentTrainConfig, splits: Splits | None = None, *,
                    worker_hook: WorkerHook | None = None, parent_run_id: str | None = None) -> dict[str, Any]:
    """Split, fine-tune with Ray Train, evaluate the best epoch on test, log and register in MLflow.

    Returns a summary: best epoch, validation and test metrics, per-epoch history, the local model
    folder and (when registered) the model version with its alias. ``splits`` overrides the
    config's dataset (the demo passes VADER-labelled posts it already holds in memory).
    ``worker_hook`` runs in every worker after each epoch (see :data:`WorkerHook`); ``parent_run_id`` nests
    the run (the Tune search's retrain of its best configuration). Ray must be up.
    """
    from finpulse.sentiment.evaluate import classification_metrics, model_predict
    from finpulse.sentiment.model import load_classifier

    config = with_tracking_names(config)
    require_train_gpus(config)  # before the MLflow run: a cluster without GPUs leaves no failed run behind
    splits = splits or prepare_splits(config)
    # Named like tracking.MODEL_DIR: MLflow stores a pyfunc artifact under its folder's basename.
    model_dir = Path(tempfile.mkdtemp(prefix="finpulse-sentiment-")) / tracking.MODEL_DIR
    with tracking.start_run(config.experiment, config.run_name or "train-sentiment", parent_run_id=parent_run_id) as logger:
        logger.log_params(_params(config, splits))
        fitted = fit_with_ray(config, splits, model_dir, logger=logger, worker_hook=worker_hook)
        clf = load_classifier(str(model_dir), max_length=config.max_length)
        test = classification_metrics(splits.test["label"], model_predict(clf)(splits.test["text"].tolist()))
        summary = _summary(fitted, splits, test)
        _log_results(logger, summary, fitted.best)
        register = config.register_model
        ref = tracking.log_model_dir(model_dir, registered_model_name=config.registered_model_name if register
                                     else None, alias=config.alias if register else None)
        summary.update({"run_id": logger.run_id, "model_uri": ref.uri, "model_version": ref.version,
                        "model": ref.label, "alias": config.alias if register else None})
    return summary
