"""VADER weak labels as the sentiment package sees them (weak-label training sets, the VADER row of
evaluations). Defined once in :mod:`finpulse.data.vader`, the ETL's curation step; re-exported here
so ``sentiment`` depends on ``data`` and never the reverse."""

from __future__ import annotations

from finpulse.data.vader import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, label_from_compound, vader_compound

__all__ = ["NEGATIVE_THRESHOLD", "POSITIVE_THRESHOLD", "label_from_compound", "vader_compound"]
