"""Tiny random BERT classifiers built from a config: real Hugging Face folders, no hub, no download.

Tests use them wherever a sentiment model is needed (label mapping, the loop, the Ray Train shell,
the Ray Data scorer); they load through the same code as a fine-tuned FinPulse model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from finpulse.sentiment.model import canonical_id2label, canonical_label

_TINY_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a is of to and in on for stock shares price company profit loss "
    "gain gains up down rise rose fall fell beat miss strong weak record growth crash plunge soar surge "
    "great good big bad terrible bullish bearish buy sell quarter report meeting today results held "
    "announced market says will , . ! ? $ # @ 0 1 2 3 4 5 6 7 8 9"
)
TINY_VOCAB = tuple(_TINY_WORDS.split())


def build_tiny_model(path: str | Path, id2label: Mapping[int, str] | None = None, *, hidden_size: int = 32,
                     num_layers: int = 2, seed: int = 0, vocab: Sequence[str] = TINY_VOCAB,
                     planted: str | None = None, margin: float = 4.0) -> Path:
    """Write a tiny random BERT classifier + WordPiece tokenizer to ``path`` (built from a config).

    ``id2label`` defaults to canonical order; pass another order to exercise label mapping.
    ``planted`` (a canonical label) zeroes the head's weights and gives that label's column a bias of
    ``margin``: every text then gets exactly softmax(margin, 0, 0) with the planted label on top.
    """
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    labels = dict(id2label or canonical_id2label())
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=128,
                        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})
    net = BertForSequenceClassification(config)
    if planted is not None:
        (column,) = [i for i, name in labels.items() if canonical_label(name) == planted]
        with torch.no_grad():
            net.classifier.weight.zero_()
            net.classifier.bias.zero_()
            net.classifier.bias[int(column)] = margin
    net.save_pretrained(path)
    tok.save_pretrained(path)
    return path
