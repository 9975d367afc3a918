"""Live path commands: ingest from the sources, replay a corpus, run the stream processor."""

from __future__ import annotations
