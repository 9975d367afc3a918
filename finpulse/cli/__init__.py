"""`finpulse ...`: a thin typer CLI over the library; each command parses options and calls one function.

One module per area registers its commands on the one app: ``data`` (etl, manifest), ``pipeline``
(bootstrap, the retraining loop),
``models`` (sentiment and forecaster training, scoring, evaluation, promotion), ``sweeps`` (Tune sweeps from
files, their leaderboards), ``serving`` (serve,
canary), ``keys`` (API keys), ``live`` (ingest, replay, stream), ``monitoring`` (drift), ``dashboard`` (the Streamlit app),
``backup`` (database dumps and the object mirror, their restore). ``jobs/*.py`` and the RayJobs run these same commands.
"""

from __future__ import annotations

import os
import sys

from finpulse.cli import backup, dashboard, data, keys, live, models, monitoring, pipeline, serving, sweeps  # noqa: F401 (each registers its commands on `app`)
from finpulse.cli._app import app

__all__ = ["app", "run_job"]


def run_job(command: str) -> None:
    """``jobs/<name>.py``: run one CLI command with this process's arguments (a job is the CLI, nothing else)."""
    app([command, *sys.argv[1:]], prog_name=os.path.basename(sys.argv[0]))
