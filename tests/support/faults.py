"""Fault injection for the training loops, through their one generic epoch callback.

:class:`ServerOutage` kills a server (the MLflow tracking server) at one epoch and waits for it to be
back at a later one (tests/integration/test_storage_faults.py, benchmarks/_storage_faults.py).

The forecaster's Ray Train worker calls ``on_epoch(metrics)`` on every rank after each epoch's
checkpoint is reported (``metrics`` has ``epoch``, ``rank``, ``world_size``, ``resume_points``).
:class:`KillOnce` uses it to kill one worker process once, so a test can prove that Ray Train
restarts the group and the loop resumes from the last checkpoint instead of epoch 0.
It is a plain dataclass: picklable, so it travels to the workers inside the worker config.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def health_check_interval_s() -> float:
    """How often Ray Train's controller polls the workers (and collects reported checkpoints)."""
    return float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))


@dataclass(frozen=True)
class KillOnce:
    """Kill rank ``rank`` at the end of epoch ``epoch`` (after its checkpoint is reported), once per
    ``marker`` file; rank 0 appends every finished epoch to ``epoch_log`` (across attempts)."""

    epoch: int
    marker: str
    epoch_log: str | None = None
    rank: int = 1

    def __call__(self, metrics: dict[str, Any]) -> None:
        rank, epoch = int(metrics["rank"]), int(metrics["epoch"])
        if self.epoch_log and rank == 0:
            with open(self.epoch_log, "a") as f:
                f.write(f"{epoch}\n")
        if rank != self.rank or epoch != self.epoch or os.path.exists(self.marker):
            return
        Path(self.marker).write_text(f"killed rank {rank} at the end of epoch {epoch}\n")
        # The controller collects a reported checkpoint when it next polls the workers. Epochs here
        # take milliseconds, so dying at once could beat that poll and leave nothing to resume from:
        # wait two polls first.
        time.sleep(2 * health_check_interval_s() + 0.5)
        os._exit(1)


@dataclass(frozen=True)
class ServerOutage:
    """Rank 0 kills a server (SIGKILL to its process group ``pid``) at the end of epoch ``kill_at``; at the
    end of epoch ``back_at`` it asks for the server back (writes ``<marker>.restart``, which the test's
    driver waits for) and waits until ``ready_url`` answers again. ``<marker>.killed`` holds the kill time.
    The server is down for a known stretch of epochs, whatever its start-up takes."""

    pid: int
    ready_url: str
    marker: str
    kill_at: int
    back_at: int
    timeout_s: float = 180.0

    def __call__(self, metrics: dict[str, Any]) -> None:
        import signal
        import urllib.request

        epoch = int(metrics["epoch"])
        if int(metrics["rank"]) != 0:
            return
        if epoch == self.kill_at and not os.path.exists(f"{self.marker}.killed"):
            Path(f"{self.marker}.killed").write_text(f"{time.time()}\n")
            os.killpg(self.pid, signal.SIGKILL)
        elif epoch == self.back_at:
            Path(f"{self.marker}.restart").write_text(f"{time.time()}\n")
            deadline = time.time() + self.timeout_s
            while time.time() < deadline:
                try:
                    with urllib.request.urlopen(self.ready_url, timeout=2):  # noqa: S310 - our own http:// URL
                        return
                except OSError:
                    time.sleep(0.2)
            raise TimeoutError(f"{self.ready_url} not back within {self.timeout_s}s")


def _ship_by_value() -> None:
    """Ray workers do not have ``tests/`` on their path: pickle this module's classes by value."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_by_value()
