"""A pretrained Hugging Face classifier as the start and the output of fine-tuning.

Loading puts the head in canonical label order (by name, never by index); saving writes the
canonical ``id2label`` and FinPulse's metadata next to the weights, so :func:`finpulse.sentiment.model.load_classifier`
reads a fine-tuned folder like any other. Plain torch and transformers: the loop runs where Ray is not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finpulse.sentiment.model import (
    METADATA_FILE,
    LabelMappingError,
    canonical_id2label,
    canonical_index,
    clean_texts,
    length_sorted_batches,
    local_model_path,
    pad_batch,
)


def build_model(model: str, label_map: dict[str, str] | None = None) -> tuple[Any, Any]:
    """Model and tokenizer ready for fine-tuning, with its head in canonical label order.

    A head whose labels map by name (FinBERT) is permuted into canonical order and kept; a head
    without meaningful labels (a bare encoder) is replaced by a fresh 3-class head.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = local_model_path(model)  # a hub id only from the local cache: no download happens here
    tok = AutoTokenizer.from_pretrained(path)
    canon = canonical_id2label()
    kw = {"id2label": canon, "label2id": {v: k for k, v in canon.items()}}
    try:
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
    return tokenizer(clean_texts(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


def predict_ids(model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: Any) -> np.ndarray:
    """Argmax class ids (canonical order) for pre-tokenised texts, length-sorted."""
    out = np.zeros(len(ids), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for idx in length_sorted_batches([len(x) for x in ids], batch_size):
            batch = {k: v.to(device) for k, v in pad_batch([ids[i] for i in idx], pad_id).items()}
            out[idx] = model(**batch).logits.argmax(-1).cpu().numpy()
    return out


def unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def save_model_dir(model: Any, tokenizer: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """``save_pretrained`` model + tokenizer (canonical id2label in its config) + FinPulse metadata."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    unwrap(model).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return path
