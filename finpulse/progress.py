"""Progress bars on the driver for work that happens in Ray workers.

Ray Train V2 hands the driver nothing until ``fit()`` returns, so the workers' epoch loop would be
minutes of silence. Rank 0 puts one small dict per epoch on a zero-CPU Ray queue; a thread in the
driver turns them into a tqdm bar. Bars go to stdout: stderr belongs to the libraries (and may
be sent to the log file, see ``finpulse.runtime.stderr_to_log``). The loops themselves only see a callable (``EpochSink``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

_FIELDS = ("train_loss", "val_loss", "val_macro_f1", "val_accuracy")


class EpochSink:
    """Picklable worker-side end: ``sink(metrics)`` posts one epoch's metrics to the driver's bar."""

    def __init__(self, ray_queue: Any) -> None:
        self._queue = ray_queue

    def __call__(self, metrics: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a progress bar must never fail training
            self._queue.put_nowait({k: v for k, v in metrics.items() if isinstance(v, int | float)})


def _postfix(metrics: dict[str, Any]) -> dict[str, str]:
    return {k: f"{metrics[k]:.4f}" for k in _FIELDS if k in metrics}


@contextlib.contextmanager
def epoch_bar(desc: str, total: int, *, enabled: bool = True) -> Iterator[EpochSink | None]:
    """A bar of ``total`` epochs while the block runs; yields the sink to hand to workers (or None)."""
    if not enabled:
        yield None
        return
    from ray.util.queue import Queue

    q = Queue(actor_options={"num_cpus": 0})
    bar = tqdm(total=total, desc=desc, unit="epoch", leave=True, file=sys.stdout)
    stop = threading.Event()

    def drain() -> None:  # the only consumer: after stop it empties the queue, then returns
        while True:
            try:
                m = q.get(timeout=0.5)
            except Exception:  # queue.Empty on timeout, or the queue actor gone
                if stop.is_set():
                    return
                continue
            bar.update(1)
            bar.set_postfix(_postfix(m), refresh=True)

    thread = threading.Thread(target=drain, name=f"progress-{desc}", daemon=True)
    thread.start()
    try:
        yield EpochSink(q)
    finally:
        stop.set()
        thread.join(timeout=10)
        bar.close()
        with contextlib.suppress(Exception):
            q.shutdown()


def stage_bar(desc: str, stages: list[str]) -> tuple[Any, Callable[[str], None]]:
    """A bar over a fixed list of named stages; returns it and a ``done(stage)`` callback."""
    bar = tqdm(total=len(stages), desc=desc, unit="stage", leave=True, file=sys.stdout)

    def done(stage: str) -> None:
        bar.update(1)
        bar.set_postfix_str(stage, refresh=True)

    return bar, done


@contextlib.contextmanager
def polled_bar(desc: str, total: int, count: Callable[[], int], *, unit: str = "row",
               every_s: float = 1.0) -> Iterator[None]:
    """A bar that polls ``count()`` (e.g. rows already written by a Ray Data sink) while the block runs."""
    bar = tqdm(total=total, desc=desc, unit=unit, leave=True, file=sys.stdout, unit_scale=True)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):  # files may be half-written while we look
                bar.n = min(total, count())
                bar.refresh()

    thread = threading.Thread(target=poll, name=f"progress-{desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)
        with contextlib.suppress(Exception):
            bar.n = min(total, count())
        bar.close()
