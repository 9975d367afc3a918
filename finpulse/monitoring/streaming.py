"""A streaming change detector on live sentiment scores (``river``'s ADWIN).

ADWIN keeps a window of recent values and drops its older part when the two parts' means differ by
more than a Hoeffding-style bound at confidence ``delta``: a detection says the score's mean moved
WITHIN the stream, which a two-sample test against a model's reference does not see. The drift job
feeds it the current window's scores in time order (an extra report entry); the stream processor can
keep one per ticker and call :meth:`ScoreStream.update` per micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river.drift import ADWIN

from finpulse.monitoring.drift import DriftEntry


@dataclass
class ScoreStream:
    """One ADWIN over a stream of scores; remembers where (by count) it detected changes."""

    delta: float = 0.002
    seen: int = 0
    detections: list[int] = field(default_factory=list)
    _adwin: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._adwin = ADWIN(delta=self.delta)

    def update(self, values: Iterable[float]) -> list[int]:
        """Feed values in arrival order; returns the positions (0-based, over the whole stream) of new detections."""
        new = []
        for v in values:
            fv = float(v)
            if not np.isfinite(fv):
                continue
            self._adwin.update(fv)
            if self._adwin.drift_detected:
                new.append(self.seen)
            self.seen += 1
        self.detections.extend(new)
        return new

    def state(self) -> dict[str, Any]:
        return {"seen": self.seen, "detections": len(self.detections), "last_detection": self.detections[-1:] or None,
                "window": int(self._adwin.width), "mean": float(self._adwin.estimation)}


def adwin_entry(scores: np.ndarray, delta: float = 0.002) -> DriftEntry:
    """The drift report's streaming entry: ADWIN over ``scores`` in time order (score = detections)."""
    stream = ScoreStream(delta=delta)
    stream.update(scores)
    st = stream.state()
    return DriftEntry("sentiment", "score_stream", "adwin", float(len(stream.detections)), None, None,
                      alarm=bool(stream.detections), n_current=stream.seen,
                      detail={**st, "detections": len(stream.detections), "positions": stream.detections[:50],
                              "delta": delta})
