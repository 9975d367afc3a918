"""``finpulse pipeline run``: one turn, a drift-gated turn, or turns on a schedule, one at a time.

The loop lock (:class:`~finpulse.loop.lock.RunLock`) is taken around every turn, so a second loop or a
hand-started run is refused with who holds it; a crashed holder's lock is released by the kernel, and
the next run resumes its unfinished turn. The drift trigger runs the drift job
(:func:`finpulse.monitoring.job.run_drift`) against the champion's reference and starts a turn on alarm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from finpulse.loop.turn import LoopOptions, StepObserver, TurnOutcome, run_turn
from finpulse.paths import DataPaths


class Triggers(BaseModel):
    """When turns run: once (default), on a drift alarm, and/or every ``every_s`` seconds."""

    every_s: float | None = Field(None, gt=0, description="schedule; None: one turn (or one drift check) and exit")
    on_drift: bool = False
    drift_window_days: int = Field(10, ge=2)
    drift_poll_s: float = Field(300.0, gt=0)
    serving: str | None = Field(None, description="Ray dashboard of the app to canary on; None: the one "
                                                  "`finpulse serve` recorded, if it runs")


def serving_client(address: str | None) -> Any:
    """The running app's Serve config client, or None when no app answers (the loop then skips the canary)."""
    from finpulse.serving import canary
    from finpulse.serving.run import read_state

    state = read_state() or {}
    dashboard = address or state.get("dashboard")
    if not dashboard:
        return None
    client = canary.ServeConfigClient(dashboard, token_path=state.get("token_path"))
    try:
        client.models()
    except canary.ApiKeyRefused:  # an app that refuses our key must not silently turn canarying off
        raise
    except Exception:  # no app there: the loop decides on the registry alone and says so
        return None
    return client


def drift_alarm(paths: DataPaths, window_days: int) -> str | None:
    """The drift job on the last ``window_days``; a reason string when it raises the alarm."""
    from finpulse.monitoring.job import run_drift

    report = run_drift(paths, window_days=window_days)
    if not report.alarm:
        return None
    return "drift alarm: " + "; ".join(report.reasons[:3])


def run_loop(paths: DataPaths, options: LoopOptions, triggers: Triggers, *, home: str,
             on_step: StepObserver | None = None, on_turn: Callable[[TurnOutcome], None] | None = None,
             stop: threading.Event | None = None) -> list[TurnOutcome]:
    """Turns as ``triggers`` say, each under the loop lock; returns what each turn decided."""
    from finpulse.loop import schedule
    from finpulse.loop.lock import RunLock, loop_lock_path

    stop = stop or threading.Event()
    outcomes: list[TurnOutcome] = []

    def turn(trigger: str, reason: str) -> TurnOutcome:
        with RunLock(loop_lock_path(home)):
            out = run_turn(paths, options, trigger=trigger, reason=reason, serving=serving_client(triggers.serving),
                           on_step=on_step, stop=stop)
        outcomes.append(out)
        if on_turn:
            on_turn(out)
        return out

    def alarm() -> str | None:
        return drift_alarm(paths, triggers.drift_window_days)

    if triggers.every_s is None:
        reason = alarm() if triggers.on_drift else "run by hand"
        if reason is not None:
            turn(schedule.DRIFT if triggers.on_drift else "manual", reason)
        return outcomes
    schedule.run_every(triggers.every_s, turn, stop=stop, trigger_fn=alarm if triggers.on_drift else None,
                       poll_s=triggers.drift_poll_s)
    return outcomes
