"""The knobs of a sentiment fine-tuning run, in one plain dataclass.

Plain (no pydantic) and free of Ray and MLflow, like :mod:`finpulse.sentiment.loop`: the GPU
benchmark script builds one on a machine that has neither. The registry and experiment names stay
None here and the driver fills them from :mod:`finpulse.tracking` (the one place they are spelled).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from finpulse.sentiment.datasets import DatasetSpec
from finpulse.sentiment.model import DEFAULT_MODEL


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
    layer_decay: float = 1.0  # layer-wise learning-rate decay: layer k below the top trains at lr * decay**k
    train_precision: str = "fp32"  # 'bf16': autocast the forward pass (about 2.5x faster for mpnet on this CPU)
    distill_weight: float = 0.5  # with teacher probabilities in the data: loss = w * KL(teacher) + (1 - w) * CE
    distill_temperature: float = 2.0
    batch_size: int = 32
    eval_batch_size: int = 128
    patience: int = 2  # epochs without a better validation macro-F1 before stopping
    num_workers: int = 1
    use_gpu: bool = False
    gpu_wait_s: float = 0.0  # with use_gpu: how long to let an autoscaler add GPU nodes (0: fail at once)
    cpus_per_worker: float = 1.0
    threads_per_worker: int | None = None  # torch threads per worker (default: its CPUs)
    seed: int = 42
    max_train_examples: int | None = None
    register_model: bool = True
    # None: the names in finpulse.tracking (SENTIMENT_MODEL, SENTIMENT_EXPERIMENT, CHALLENGER), filled in
    # by the driver; this module stays importable where MLflow is not installed
    registered_model_name: str | None = None
    alias: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    storage_path: str | None = None  # Ray Train checkpoints (local path or s3://); None: FINPULSE_RAY_STORAGE_PATH
    max_failures: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.dataset, dict):
            self.dataset = DatasetSpec(**self.dataset)
        if self.epochs < 1 or self.batch_size < 1 or self.num_workers < 1:
            raise ValueError("epochs, batch_size and num_workers must be >= 1")
        if not 0 < self.layer_decay <= 1 or not 0 <= self.distill_weight <= 1:
            raise ValueError("layer_decay must be in (0, 1] and distill_weight in [0, 1]")
        if self.train_precision not in ("fp32", "bf16"):
            raise ValueError(f"train_precision must be 'fp32' or 'bf16', not {self.train_precision!r}")

    def model_dump(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        out = asdict(self)
        for k in exclude:
            out.pop(k, None)
        return out
