"""Monitoring: custom Serve metrics (metrics.py), freshness, and drift: reference (snapshots), drift (pure
statistics), streaming (ADWIN), report (JSON/HTML/latest.json), window + job (the `finpulse drift` shell)."""
