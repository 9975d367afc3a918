"""Monitoring: custom Serve metrics (metrics.py) and drift statistics."""
