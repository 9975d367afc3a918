"""Sentiment: VADER weak labels, transformer classifiers, Ray Train fine-tuning, Ray Data scoring.

The choices below live here, away from torch, so the CLI can offer them without importing a model.
"""

from typing import Literal, get_args

DatasetKind = Literal["phrasebank", "tfns", "csv", "vader_posts", "vader_synthetic"]
DATASET_KINDS: tuple[str, ...] = get_args(DatasetKind)
Precision = Literal["fp32", "bf16", "int8", "auto"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class HubModelNotLocal(FileNotFoundError):
    """A Hugging Face hub id that is neither a local folder nor in the local cache: FinPulse never downloads
    (here, offline, ``HF_HUB_OFFLINE``); defined away from torch so the CLI can report it without a trace."""
