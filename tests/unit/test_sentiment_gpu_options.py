"""The GPU path's resource requests, without a GPU: what Ray Train and Ray Data are asked for when a run
wants GPUs (the cluster check itself runs against the CPU-only Ray head in tests/integration)."""

from __future__ import annotations

import ray.data
import ray.train
from support.tiny_models import build_tiny_model

from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.model import resolve_precision
from finpulse.sentiment.score import PostScorer, ScoreOptions, actor_options
from finpulse.sentiment.train import scaling_config


def test_train_asks_ray_train_for_one_gpu_per_worker():
    gpu = scaling_config(SentimentTrainConfig(num_workers=3, use_gpu=True, cpus_per_worker=2))
    assert isinstance(gpu, ray.train.ScalingConfig)
    assert gpu.use_gpu is True and gpu.num_workers == 3
    assert gpu.resources_per_worker == {"CPU": 2, "GPU": 1}
    cpu = scaling_config(SentimentTrainConfig(num_workers=2))
    assert cpu.use_gpu is False and cpu.resources_per_worker == {"CPU": 1.0}


def test_scorer_actors_ask_ray_data_for_their_gpu_share():
    o = ScoreOptions(num_actors=2, gpus=0.5, num_cpus_per_actor=1, precision="auto")
    opts = actor_options(o, "folder", "v1", resolve_precision(o.precision, "cuda"))
    assert opts["num_gpus"] == 0.5 and opts["num_cpus"] == 1
    assert isinstance(opts["compute"], ray.data.ActorPoolStrategy) and opts["compute"].max_size == 2
    kw = opts["fn_constructor_kwargs"]
    assert kw["device"] == "cuda" and kw["precision"] == "fp32"  # auto on a GPU: fp32 (bf16 is a CPU choice)
    cpu = actor_options(ScoreOptions(), "folder", "v1", "fp32")
    assert cpu["num_gpus"] is None and cpu["fn_constructor_kwargs"]["device"] == "cpu"


def test_gpu_actor_without_cuda_falls_back_to_cpu(tmp_path):
    """An actor that asked for cuda where torch sees none (a CPU host) still scores, on CPU (int8 then stays);
    on a GPU, int8 (CPU-only) becomes fp32 and the scorer string says so."""
    import torch

    path = build_tiny_model(tmp_path / "m")
    actor = PostScorer(str(path), "v1", precision="int8", device="cuda")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert actor.clf.device == want and actor.scorer == ("v1" if want == "cuda" else "v1+int8")
    assert next(actor.clf.model.parameters()).device.type == want
