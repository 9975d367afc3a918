"""Fine-tune a BERT-family classifier into a 3-class sentiment model with Ray Train.

The epoch loop (:func:`training_loop`) is plain torch and knows nothing of Ray: it takes a
``report`` callback, so the Ray Train worker, the GPU benchmark script and tests share it. Ray Train
(V2 TorchTrainer) supplies workers, DDP and per-epoch checkpoints; the driver then evaluates the best
checkpoint on the test split and does all MLflow logging (params, per-epoch metrics, confusion
matrices, model + tokenizer, registry alias). Logging from the driver keeps workers free of tracking
credentials and avoids concurrent writers on a sqlite store.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.progress import epoch_bar
from finpulse.runtime import sigint_restored
from finpulse.sentiment.datasets import DatasetSpec, Splits
from finpulse.sentiment.model import (
    DEFAULT_MODEL,
    METADATA_FILE,
    LabelMappingError,
    canonical_id2label,
    canonical_index,
    default_model_path,
    pad_batch,
)

LABEL_TO_ID = {name: i for i, name in enumerate(SENTIMENT_LABELS)}


@dataclass
class SentimentTrainConfig:
    """Every knob of a fine-tuning run (a plain dataclass: the GPU script runs where pydantic is not)."""

    model: str = DEFAULT_MODEL  # base model: 'minilm' (shipped), a local folder or a hub id
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    label_map: dict[str, str] | None = None  # names for a base model's LABEL_n columns
    max_length: int = 64
    epochs: int = 3
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 32
    eval_batch_size: int = 128
    patience: int = 2  # epochs without a better validation macro-F1 before stopping
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    threads_per_worker: int | None = None  # torch threads per worker (default: its CPUs)
    seed: int = 42
    max_train_examples: int | None = None
    register_model: bool = True
    registered_model_name: str = "finpulse-sentiment"
    alias: str = "challenger"
    experiment: str = "finpulse-sentiment"
    run_name: str | None = None
    storage_path: str | None = None  # Ray Train checkpoint storage (local path or s3://)
    max_failures: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.dataset, dict):
            self.dataset = DatasetSpec(**self.dataset)
        if self.epochs < 1 or self.batch_size < 1 or self.num_workers < 1:
            raise ValueError("epochs, batch_size and num_workers must be >= 1")

    def model_dump(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        out = asdict(self)
        for k in exclude:
            out.pop(k, None)
        return out


# ---- pure pieces -----------------------------------------------------------------------------------

def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                     pool_batches: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort within pools of ``pool_batches`` batches,
    cut, shuffle the batch order. Dynamic padding then wastes little, and batches stay random."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[np.ndarray] = []
    pool = batch_size * pool_batches
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def shard(n: int, rank: int, world_size: int, rng: np.random.Generator) -> np.ndarray:
    """This rank's example indices; every rank gets the same count so DDP steps stay in lockstep."""
    per = n // world_size
    return rng.permutation(n)[rank * per : (rank + 1) * per]


def build_model(model: str, label_map: dict[str, str] | None = None) -> tuple[Any, Any]:
    """Model and tokenizer ready for fine-tuning, with its head in canonical label order.

    A head whose labels map by name (FinBERT) is permuted into canonical order and kept; a head
    without meaningful labels (a bare encoder) is replaced by a fresh 3-class head.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = str(default_model_path()) if model in (DEFAULT_MODEL, "default") else model
    tok = AutoTokenizer.from_pretrained(path)
    canon = canonical_id2label()
    kw = {"id2label": canon, "label2id": {v: k for k, v in canon.items()}}
    try:
        from transformers import AutoConfig

        order = canonical_index(AutoConfig.from_pretrained(path).id2label, label_map)
    except LabelMappingError:
        order = None
    if order is None:
        net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, **kw)
        return net, tok
    net = AutoModelForSequenceClassification.from_pretrained(path)
    head = getattr(net, "classifier", None)
    head = getattr(head, "out_proj", head)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"{model}: cannot find a Linear classifier head to reorder")
    with torch.no_grad():
        head.weight.copy_(head.weight[order].clone())
        head.bias.copy_(head.bias[order].clone())
    net.config.id2label, net.config.label2id = kw["id2label"], kw["label2id"]
    return net, tok


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    from finpulse.sentiment.model import clean_texts

    return tokenizer(clean_texts(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


def predict_ids(model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: Any) -> np.ndarray:
    """Argmax class ids (canonical order) for pre-tokenised texts, length-sorted."""
    from finpulse.sentiment.model import length_sorted_batches

    out = np.zeros(len(ids), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for idx in length_sorted_batches([len(x) for x in ids], batch_size):
            batch = {k: v.to(device) for k, v in pad_batch([ids[i] for i in idx], pad_id).items()}
            out[idx] = model(**batch).logits.argmax(-1).cpu().numpy()
    return out


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def save_model_dir(model: Any, tokenizer: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """``save_pretrained`` model + tokenizer (canonical id2label in its config) + FinPulse metadata."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _unwrap(model).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return path


def training_loop(cfg: dict[str, Any], splits: dict[str, dict[str, list]], *, rank: int = 0, world_size: int = 1,
                  device: Any = "cpu", report: Callable[[dict[str, Any], str | None], None],
                  prepare_model: Callable[[Any], Any] | None = None, start_dir: str | None = None,
                  start_epoch: int = 0, history: list[dict[str, Any]] | None = None) -> None:
    """The epoch loop: train, evaluate on validation (rank 0), checkpoint, early-stop on macro-F1.

    ``splits`` holds plain lists (``{"train": {"text": [...], "label": [...]}, "validation": ...}``);
    ``report(metrics, checkpoint_dir)`` is called once per epoch on every rank.
    """
    from sklearn.metrics import f1_score

    torch.manual_seed(int(cfg["seed"]))
    threads = cfg.get("threads_per_worker") or max(1, int(cfg.get("cpus_per_worker") or 1))
    if str(device) == "cpu":
        torch.set_num_threads(int(threads))
    model, tok = build_model(start_dir or cfg["model"], cfg.get("label_map"))
    if prepare_model is not None:
        model = prepare_model(model)
    else:
        model.to(device)
    pad_id = tok.pad_token_id or 0
    train_ids = encode(tok, splits["train"]["text"], cfg["max_length"])
    train_y = np.asarray([LABEL_TO_ID[x] for x in splits["train"]["label"]])
    val_ids = encode(tok, splits["validation"]["text"], cfg["max_length"])
    val_y = np.asarray([LABEL_TO_ID[x] for x in splits["validation"]["label"]])

    rng = np.random.default_rng(int(cfg["seed"]) + 1000 * start_epoch)
    steps_per_epoch = max(1, math.ceil((len(train_ids) // world_size) / cfg["batch_size"]))
    total = steps_per_epoch * cfg["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    warmup = int(cfg["warmup_ratio"] * total)

    def lr_lambda(step: int) -> float:
        step += start_epoch * steps_per_epoch  # resume: continue the schedule where it stopped
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    history = list(history or [])
    best = max((h["val_macro_f1"] for h in history), default=-1.0)
    bad_epochs = 0
    for epoch in range(start_epoch, cfg["epochs"]):
        t0 = time.perf_counter()
        model.train()
        mine = shard(len(train_ids), rank, world_size, rng)
        losses = []
        for b in bucketed_batches([len(train_ids[i]) for i in mine], cfg["batch_size"], rng):
            idx = mine[b]
            batch = {k: v.to(device) for k, v in pad_batch([train_ids[i] for i in idx], pad_id).items()}
            labels = torch.as_tensor(train_y[idx], device=device)
            logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        stop = torch.zeros(1)
        ckpt_dir = None
        if rank == 0:
            pred = predict_ids(_unwrap(model), val_ids, pad_id, cfg["eval_batch_size"], device)
            from sklearn.metrics import confusion_matrix

            metrics.update({
                "val_accuracy": float((pred == val_y).mean()) if len(val_y) else float("nan"),
                "val_macro_f1": float(f1_score(val_y, pred, labels=[0, 1, 2], average="macro", zero_division=0)),
                "val_confusion_matrix": confusion_matrix(val_y, pred, labels=[0, 1, 2]).tolist(),
                "epoch_seconds": time.perf_counter() - t0,
            })
            history.append({k: v for k, v in metrics.items() if k != "val_confusion_matrix"})
            metrics["history"] = history
            if metrics["val_macro_f1"] > best + 1e-9:
                best, bad_epochs = metrics["val_macro_f1"], 0
            else:
                bad_epochs += 1
            if bad_epochs >= cfg["patience"]:
                stop[0] = 1
            ckpt_dir = tempfile.mkdtemp(prefix="finpulse-sent-ckpt-")
            save_model_dir(model, tok, ckpt_dir, {"base_model": cfg["model"], "epoch": epoch,
                                                   "max_length": cfg["max_length"], "history": history})
        if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(stop, src=0)  # every rank stops together, or DDP would hang
        report(metrics, ckpt_dir)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if stop.item():
            break
        model.train()


# ---- Ray shell -------------------------------------------------------------------------------------

def _ray_worker(cfg: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    start_dir, start_epoch, history = None, 0, None
    ckpt = ray.train.get_checkpoint()
    tmp = None
    if ckpt is not None:  # a restarted run continues from the last epoch's weights
        tmp = ckpt.to_directory(tempfile.mkdtemp(prefix="finpulse-sent-resume-"))
        meta = json.loads((Path(tmp) / METADATA_FILE).read_text())
        start_dir, start_epoch, history = tmp, int(meta["epoch"]) + 1, meta.get("history")

    progress = cfg.pop("_progress", None)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        if progress is not None and ctx.get_world_rank() == 0:
            progress(metrics)
        checkpoint = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    training_loop(cfg, cfg.pop("_splits"), rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                  device=ray.train.torch.get_device(), report=report,
                  prepare_model=ray.train.torch.prepare_model, start_dir=start_dir, start_epoch=start_epoch,
                  history=history)


def _lists(df: Any) -> dict[str, list]:
    return {"text": df["text"].astype(str).tolist(), "label": df["label"].tolist()}


def prepare_splits(config: SentimentTrainConfig) -> Splits:
    from finpulse.sentiment.datasets import load_splits

    splits = load_splits(config.dataset, seed=config.seed)
    if config.max_train_examples:
        splits.train = splits.train.head(config.max_train_examples)
    return splits


def fit(config: SentimentTrainConfig, splits: Splits) -> Any:
    """Run the Ray Train TorchTrainer; returns its Result (per-epoch checkpoints, best kept)."""

    from finpulse.config import get_settings
    from finpulse.sentiment.score import connect_ray

    connect_ray()
    cfg = config.model_dump()
    cfg["_splits"] = {"train": _lists(splits.train), "validation": _lists(splits.validation)}
    storage = config.storage_path or os.path.abspath(os.path.join(get_settings().home, "ray_results"))
    resources = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1
    with epoch_bar("sentiment (Ray Train)", config.epochs) as sink, sigint_restored():
        return _trainer(config, {**cfg, "_progress": sink}, storage, resources).fit()


def _trainer(config: SentimentTrainConfig, cfg: dict[str, Any], storage: str, resources: dict[str, float]) -> Any:
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        _ray_worker,
        train_loop_config=cfg,
        scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=config.run_name or f"sentiment-{int(time.time())}",
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_macro_f1",
                                                         checkpoint_score_order="max"),
        ),
    )


def _best_checkpoint(result: Any) -> tuple[Any, dict[str, Any]]:
    candidates = list(result.best_checkpoints or [])
    if not candidates:
        raise RuntimeError(f"training produced no checkpoint: {result.error}")
    return max(candidates, key=lambda cm: (cm[1].get("val_macro_f1", -1), -cm[1].get("epoch", 0)))


def train_sentiment(config: SentimentTrainConfig, splits: Splits | None = None) -> dict[str, Any]:
    """Split, fine-tune with Ray Train, evaluate the best epoch on test, log and register in MLflow.

    Returns a summary: best epoch, validation and test metrics, per-epoch history, the local model
    folder and (when registered) the model version with its alias. ``splits`` overrides the
    config's dataset (the demo passes VADER-labelled posts it already holds in memory).
    """
    import mlflow

    from finpulse import tracking
    from finpulse.sentiment.evaluate import classification_metrics, confusion_matrix_figure, model_predict
    from finpulse.sentiment.model import load_classifier

    splits = splits or prepare_splits(config)
    t0 = time.perf_counter()
    result = fit(config, splits)
    train_seconds = time.perf_counter() - t0
    if result.error:
        raise RuntimeError(f"sentiment training failed: {result.error}") from result.error
    ckpt, best_metrics = _best_checkpoint(result)
    history = (result.metrics or {}).get("history") or best_metrics.get("history", [])
    # Named like tracking.MODEL_DIR: MLflow stores a pyfunc artifact under its folder's basename.
    model_dir = Path(tempfile.mkdtemp(prefix="finpulse-sentiment-")) / "model_dir"
    ckpt.to_directory(str(model_dir))
    clf = load_classifier(str(model_dir), max_length=config.max_length)
    test = classification_metrics(splits.test["label"], model_predict(clf)(splits.test["text"].tolist()))
    summary: dict[str, Any] = {
        "best_epoch": best_metrics["epoch"], "epochs_run": len(history), "train_seconds": train_seconds,
        "val_accuracy": best_metrics["val_accuracy"], "val_macro_f1": best_metrics["val_macro_f1"],
        "test": test, "history": history, "splits": splits.sizes(), "model_dir": str(model_dir),
    }
    with tracking.start_run(config.experiment, config.run_name or "train-sentiment") as run:
        params = config.model_dump(exclude={"dataset"})
        params.update({f"dataset.{k}": v for k, v in config.dataset.model_dump().items()})
        params.update({f"n_{k}": v for k, v in splits.sizes().items()})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        for h in history:
            mlflow.log_metrics({k: float(v) for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        mlflow.log_metrics({"best_epoch": float(summary["best_epoch"]), "train_seconds": train_seconds,
                            "best_val_macro_f1": summary["val_macro_f1"], "best_val_accuracy": summary["val_accuracy"],
                            "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                            **{f"test_f1_{c}": test[f"f1_{c}"] for c in SENTIMENT_LABELS}})
        tracking.log_figure(confusion_matrix_figure(best_metrics["val_confusion_matrix"], "validation (best epoch)"),
                            "confusion_matrix_validation.png")
        tracking.log_figure(confusion_matrix_figure(test["confusion_matrix"], "test"), "confusion_matrix_test.png")
        mlflow.log_dict({"history": history, "test": test}, "sentiment_metrics.json")
        ref = tracking.log_model_dir(model_dir, registered_model_name=config.registered_model_name
                                     if config.register_model else None, alias=config.alias if config.register_model else None)
        summary.update({"run_id": run.run_id, "model_uri": ref.uri, "model_version": ref.version,
                        "model": ref.label, "alias": config.alias if config.register_model else None})
    return summary


def train_on_vader_posts(texts: Sequence[str], *, max_examples: int = 600, seed: int = 42,
                         **overrides: Any) -> dict[str, Any]:
    """The original design's approach as a training set: VADER weak labels over a post corpus.

    Used by ``make demo``: a brief fine-tune of the shipped MiniLM on synthetic posts (one epoch,
    short sequences: about a minute on 2 cores), registered as finpulse-sentiment@challenger.
    """
    import pandas as pd

    from finpulse.sentiment.datasets import DatasetSpec, stratified_split, vader_labelled

    unique = pd.Series(list(texts), dtype=str).drop_duplicates()
    sample = unique.sample(n=min(max_examples, len(unique)), random_state=seed)
    splits = stratified_split(vader_labelled(sample), seed=seed)
    defaults: dict[str, Any] = {"epochs": 1, "max_length": 48, "learning_rate": 1e-4, "batch_size": 32,
                                "run_name": "vader-weak-labels", "seed": seed,
                                "dataset": DatasetSpec(kind="vader_posts", max_posts=max_examples)}
    return train_sentiment(SentimentTrainConfig(**{**defaults, **overrides}), splits=splits)
