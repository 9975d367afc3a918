"""The sentiment fine-tuning loop as plain torch: no Ray, no MLflow, no pydantic.

:func:`fit` trains, validates (rank 0), early-stops on validation macro-F1 and writes a checkpoint
folder every epoch, then calls one generic ``on_epoch(metrics, checkpoint_folder)`` callback. The
Ray Train shell (:mod:`finpulse.sentiment.train`) reports, logs and draws the progress bar from it;
the GPU benchmark script and tests keep the best folder with :class:`KeepBest`. Keeping this module
free of Ray and MLflow is what lets the GPU script run it on a machine that has neither.

A checkpoint folder follows :mod:`finpulse.checkpoints`: ``model/`` (a Hugging Face folder, the
weights), ``meta.json`` (epoch, history, early-stopping state, resume points, the epoch's validation
confusion matrix) and ``state.pt`` (empty: AdamW's moments are not kept, so a checkpoint costs the
model's size once; a resumed run restarts them and continues the learning-rate schedule).
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finpulse import checkpoints
from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.model import pad_batch
from finpulse.sentiment.pretrained import build_model, encode, predict_ids, save_model_dir, unwrap

LABEL_TO_ID = {name: i for i, name in enumerate(SENTIMENT_LABELS)}
SOFT_COLUMNS = tuple(f"teacher_{name}" for name in SENTIMENT_LABELS)  # optional distillation targets
MODEL_SUBDIR = "model"  # the Hugging Face folder inside a checkpoint

EpochCallback = Callable[[dict[str, Any], Path | None], None]


@dataclass
class Examples:
    """Texts and their canonical label names (one shard, or a whole split)."""

    texts: list[str]
    labels: list[str]
    soft: np.ndarray | None = None  # a teacher's probabilities (n, 3) for distillation, else None

    @classmethod
    def from_frame(cls, df: Any) -> Examples:
        soft = df[list(SOFT_COLUMNS)].to_numpy(np.float32) if set(SOFT_COLUMNS) <= set(df.columns) else None
        return cls(df["text"].astype(str).tolist(), df["label"].tolist(), soft)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Worker:
    """Where this copy of the loop runs: its rank, the world, its device and how to wrap the model (DDP)."""

    rank: int = 0
    world_size: int = 1
    device: Any = "cpu"
    prepare_model: Callable[[Any], Any] | None = None


@dataclass
class EarlyStopping:
    """Best validation macro-F1 so far and the epochs since (kept in ``meta.json``, not pickled)."""

    patience: int
    best: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, f1: float, epoch: int) -> bool:
        """Record an epoch; True when training should stop."""
        if f1 > self.best + 1e-9:
            self.best, self.best_epoch, self.bad_epochs = f1, epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def to_meta(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}


@dataclass
class FitResult:
    """What :func:`fit` leaves behind on this rank (the weights live in the checkpoints it wrote)."""

    history: list[dict[str, Any]]
    best_val_macro_f1: float
    best_epoch: int
    resume_points: list[int]


@dataclass
class _Encoded:
    ids: list[list[int]]
    y: np.ndarray
    pad_id: int
    soft: np.ndarray | None = None


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


# ---- the loop's steps ------------------------------------------------------------------------------

def _encode_examples(tok: Any, examples: Examples, max_length: int) -> _Encoded:
    y = np.asarray([LABEL_TO_ID[x] for x in examples.labels], dtype=np.int64)  # KeyError: an unknown label
    return _Encoded(encode(tok, examples.texts, max_length), y, tok.pad_token_id or 0, examples.soft)


def _equal_shards(data: _Encoded, world_size: int) -> _Encoded:
    """Cut every rank's shard to the smallest one: DDP ranks must take the same number of steps."""
    if world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return data
    n = torch.tensor([len(data.ids)])
    torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)
    k = int(n.item())
    return _Encoded(data.ids[:k], data.y[:k], data.pad_id, None if data.soft is None else data.soft[:k])


def layer_of(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise decay: embeddings 0, encoder layer i -> i + 1, heads on top."""
    if "embeddings" in name:
        return 0
    found = re.search(r"\.layer\.(\d+)\.", name)
    return int(found.group(1)) + 1 if found else num_layers + 1


def parameter_groups(model: Any, config: SentimentTrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: lr * layer_decay ** (depth below the head), no weight decay on biases and norms."""
    named = list(unwrap(model).named_parameters())
    top = int(getattr(unwrap(model).config, "num_hidden_layers", 0)) + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in named:
        depth, no_decay = layer_of(name, top - 1), name.endswith("bias") or "LayerNorm" in name or "norm" in name
        g = groups.setdefault((depth, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else config.weight_decay,
                                                  "lr": config.learning_rate * config.layer_decay ** (top - depth)})
        g["params"].append(param)
    return list(groups.values())


def _optimizer(model: Any, config: SentimentTrainConfig, steps_per_epoch: int, start_epoch: int) -> tuple[Any, Any]:
    """AdamW with layer-wise rates, linear warm-up and decay over every epoch's steps; a resumed run continues."""
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.learning_rate)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total)

    def lr_lambda(step: int) -> float:
        step += start_epoch * steps_per_epoch
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def batch_loss(logits: Any, y: Any, soft: Any, config: SentimentTrainConfig) -> Any:
    """Cross-entropy on the labels, mixed with KL to a teacher's softened probabilities when given."""
    ce = torch.nn.functional.cross_entropy(logits.float(), y)
    if soft is None or config.distill_weight == 0:
        return ce
    t = config.distill_temperature
    teacher = torch.softmax(torch.log(soft.clamp_min(1e-8)) / t, dim=-1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits.float() / t, dim=-1), teacher, reduction="batchmean")
    return config.distill_weight * kl * t * t + (1 - config.distill_weight) * ce


def train_epoch(model: Any, optimizer: Any, scheduler: Any, data: _Encoded, config: SentimentTrainConfig,
                rng: np.random.Generator, device: Any) -> float:
    """One pass over this rank's examples in bucketed batches; returns the mean training loss."""
    model.train()
    order = rng.permutation(len(data.ids))
    losses = []
    for b in bucketed_batches([len(data.ids[i]) for i in order], config.batch_size, rng):
        idx = order[b]
        batch = {k: v.to(device) for k, v in pad_batch([data.ids[i] for i in idx], data.pad_id).items()}
        soft = None if data.soft is None else torch.as_tensor(data.soft[idx], device=device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config.train_precision == "bf16"):
            logits = model(**batch).logits
        loss = batch_loss(logits, torch.as_tensor(data.y[idx], device=device), soft, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def validate(model: Any, data: _Encoded, batch_size: int, device: Any) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix on the validation examples."""
    from sklearn.metrics import confusion_matrix, f1_score

    pred = predict_ids(unwrap(model), data.ids, data.pad_id, batch_size, device)
    return {
        "val_accuracy": float((pred == data.y).mean()) if len(data.y) else float("nan"),
        "val_macro_f1": float(f1_score(data.y, pred, labels=[0, 1, 2], average="macro", zero_division=0)),
        "val_confusion_matrix": confusion_matrix(data.y, pred, labels=[0, 1, 2]).tolist(),
    }


def _stop_together(stop: bool, world_size: int) -> bool:
    """Rank 0 decides; every rank stops with it, or DDP would hang."""
    flag = torch.tensor([1.0 if stop else 0.0])
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


@dataclass
class _State:
    """Everything the loop carries from epoch to epoch (and through ``meta.json`` across restarts)."""

    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resume_points: list[int] = field(default_factory=list)
    stopper: EarlyStopping | None = None
    train_rows: int = 0  # this rank's examples (recorded in meta.json: shards are equal)


def _resumed(folder: str | Path | None, patience: int) -> _State:
    if folder is None:
        return _State(stopper=EarlyStopping(patience))
    meta = checkpoints.read_meta(folder)
    start = int(meta["epoch"]) + 1
    return _State(start, list(meta["history"]), [*meta.get("resume_points", []), start],
                  EarlyStopping(patience, **meta["early_stop"]))


def write_checkpoint(folder: Path, model: Any, tok: Any, config: SentimentTrainConfig, meta: dict[str, Any]) -> Path:
    """One epoch's checkpoint: ``model/`` (Hugging Face folder) + ``meta.json`` + ``state.pt``."""
    save_model_dir(model, tok, folder / MODEL_SUBDIR, {"base_model": config.model, "epoch": meta["epoch"],
                                                       "max_length": config.max_length, "history": meta["history"]})
    return checkpoints.write(folder, {}, meta)


def _epoch_end(model: Any, tok: Any, config: SentimentTrainConfig, state: _State, metrics: dict[str, Any],
               on_epoch: EpochCallback | None) -> bool:
    """Rank 0's bookkeeping after an epoch: history, early stopping, checkpoint, callback. True: stop."""
    assert state.stopper is not None  # noqa: S101 - type narrowing: set before the first epoch
    state.history.append({k: v for k, v in metrics.items() if k != "val_confusion_matrix"})
    stop = state.stopper.update(metrics["val_macro_f1"], metrics["epoch"])
    meta = {"epoch": metrics["epoch"], "history": state.history, "early_stop": state.stopper.to_meta(),
            "resume_points": state.resume_points, "val_confusion_matrix": metrics["val_confusion_matrix"],
            "train_rows": state.train_rows, "base_model": config.model}
    folder = Path(tempfile.mkdtemp(prefix="finpulse-sent-ckpt-"))
    try:
        write_checkpoint(folder, model, tok, config, meta)
        if on_epoch is not None:
            on_epoch(metrics, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return stop


def fit(config: SentimentTrainConfig, train: Examples, validation: Examples, *,
        on_epoch: EpochCallback | None = None, worker: Worker | None = None,
        resume: str | Path | None = None) -> FitResult:
    """Fine-tune on ``train`` (this rank's shard), validate on ``validation`` (read on rank 0 only).

    ``on_epoch(metrics, folder)`` runs on every rank after each epoch; on rank 0 ``folder`` is that
    epoch's checkpoint (deleted when the callback returns), elsewhere None. ``resume`` is such a
    folder: training continues from the epoch after it, with its history and early-stopping state.
    """
    w = worker or Worker()
    torch.manual_seed(int(config.seed))
    if str(w.device) == "cpu":
        torch.set_num_threads(int(config.threads_per_worker or max(1, int(config.cpus_per_worker or 1))))
    state = _resumed(resume, config.patience)
    model, tok = build_model(str(Path(resume) / MODEL_SUBDIR) if resume else config.model, config.label_map)
    model = w.prepare_model(model) if w.prepare_model is not None else model.to(w.device)
    train_data = _equal_shards(_encode_examples(tok, train, config.max_length), w.world_size)
    val_data = _encode_examples(tok, validation, config.max_length) if w.rank == 0 else None
    state.train_rows = len(train_data.ids)
    steps = max(1, math.ceil(len(train_data.ids) / config.batch_size))
    optimizer, scheduler = _optimizer(model, config, steps, state.start_epoch)
    rng = np.random.default_rng(int(config.seed) + 1000 * state.start_epoch)
    stop = state.stopper is not None and state.stopper.bad_epochs >= config.patience
    for epoch in range(state.start_epoch, config.epochs):
        if stop:
            break
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": train_epoch(
            model, optimizer, scheduler, train_data, config, rng, w.device)}
        if w.rank == 0 and val_data is not None:
            metrics.update(validate(model, val_data, config.eval_batch_size, w.device))
            metrics["epoch_seconds"] = time.perf_counter() - t0
            stop = _epoch_end(model, tok, config, state, metrics, on_epoch)
        elif on_epoch is not None:
            on_epoch(metrics, None)
        stop = _stop_together(stop, w.world_size)
    best = state.stopper or EarlyStopping(config.patience)
    return FitResult(state.history, best.best, best.best_epoch, state.resume_points)


class KeepBest:
    """An epoch callback that keeps a copy of the best epoch's Hugging Face folder (in-process runs)."""

    def __init__(self, dest: str | Path) -> None:
        self.dest = Path(dest)
        self.best = -math.inf
        self.reports: list[dict[str, Any]] = []

    def __call__(self, metrics: dict[str, Any], folder: Path | None) -> None:
        self.reports.append({k: v for k, v in metrics.items() if k != "val_confusion_matrix"})
        if folder is None or metrics["val_macro_f1"] <= self.best + 1e-9:
            return
        self.best = metrics["val_macro_f1"]
        shutil.rmtree(self.dest, ignore_errors=True)
        shutil.copytree(folder / MODEL_SUBDIR, self.dest)

