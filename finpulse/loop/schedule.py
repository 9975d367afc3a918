"""When the loop runs a turn: every ``--every`` interval, or sooner when a drift alarm asks.

Pure Python: :func:`next_turn` decides from numbers (tested without waiting), :func:`run_every` polls
it, runs one turn at a time in the calling thread, survives a failing turn and returns promptly once
``stop`` is set (:func:`install_stop_signals` sets it on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SCHEDULE, DRIFT = "schedule", "drift"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SLICE_S = 0.1  # the longest the loop sleeps before looking at ``stop`` again
_PART = re.compile(r"(\d+)([smhdw])")


def parse_every(text: str) -> float:
    """``"30m"``, ``"6h"``, ``"1d"``, ``"1d12h"`` (units s m h d w, largest first) -> seconds."""
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    units = [u for _, u in parts]
    if not parts or "".join(n + u for n, u in parts) != cleaned or len(set(units)) != len(units) \
            or units != sorted(units, key=lambda u: -UNITS[u]):
        raise ValueError(f"--every {text!r}: use a number and a unit, e.g. 30m, 6h, 1d, 1d12h")
    seconds = float(sum(int(n) * UNITS[u] for n, u in parts))
    if seconds <= 0:
        raise ValueError(f"--every {text!r}: the interval must be positive")
    return seconds


def format_every(seconds: float) -> str:
    """The inverse of :func:`parse_every` for whole seconds (``5400`` -> ``1h30m``)."""
    left, out = int(seconds), ""
    for unit, size in sorted(UNITS.items(), key=lambda kv: -kv[1]):
        if left >= size:
            out += f"{left // size}{unit}"
            left %= size
    return out or "0s"


def next_turn(now: float, last_start: float | None, every_s: float, alarm: str | None,
              cooldown_s: float = 0.0) -> tuple[str, str] | None:
    """``(trigger, reason)`` when a turn should start now, else None.

    The first turn starts at once. A drift alarm starts a turn once ``cooldown_s`` has passed since
    the last one started, and wins over a schedule slot due at the same time (the reason that asks for
    a new model is the one worth recording). The next slot is ``every_s`` after the last start of any
    kind, so a drift turn also resets the schedule and missed slots are not run twice.
    """
    if last_start is None:
        return SCHEDULE, "first turn"
    if alarm and now - last_start >= cooldown_s:
        return DRIFT, alarm
    if now - last_start >= every_s:
        return SCHEDULE, f"every {format_every(every_s)}"
    return None


@dataclass(frozen=True)
class TurnRecord:
    """Why a turn started, and how it ended."""

    trigger: str
    reason: str
    started_at: float
    duration_s: float
    ok: bool
    error: str | None = None
    result: Any = None


def run_every(every_s: float, turn_fn: Callable[[str, str], Any], *, stop: threading.Event,
              trigger_fn: Callable[[], str | None] | None = None, poll_s: float = 30.0,
              cooldown_s: float = 0.0, max_turns: int | None = None) -> list[TurnRecord]:
    """Run ``turn_fn(trigger, reason)`` when :func:`next_turn` says so, until ``stop`` is set.

    ``trigger_fn`` (the drift alarm) is polled every ``poll_s`` and returns a reason or None; an error
    in it is logged and read as no alarm. ``turn_fn`` should take the loop lock; an exception from it
    (a failed step, ``LoopBusy``) is logged and recorded, and the loop waits for the next slot.
    Returns the record of every turn started, after ``stop`` or ``max_turns``.
    """
    history: list[TurnRecord] = []
    last_start: float | None = None
    last_poll = float("-inf")
    alarm: str | None = None
    while not stop.is_set() and (max_turns is None or len(history) < max_turns):
        now = time.monotonic()
        if trigger_fn is not None and now - last_poll >= poll_s:
            alarm, last_poll = _poll(trigger_fn), now
        start = next_turn(now, last_start, every_s, alarm, cooldown_s)
        if start is None:
            stop.wait(SLICE_S)
            continue
        last_start, alarm = now, None
        history.append(_run_one(turn_fn, *start))
    return history


def _poll(trigger_fn: Callable[[], str | None]) -> str | None:
    try:
        return trigger_fn()
    except Exception:  # a broken alarm must not stop the schedule
        log.exception("drift check failed; treated as no alarm")
        return None


def _run_one(turn_fn: Callable[[str, str], Any], trigger: str, reason: str) -> TurnRecord:
    log.info("turn starts (%s: %s)", trigger, reason)
    wall, t0 = time.time(), time.monotonic()
    try:
        result = turn_fn(trigger, reason)
    except Exception as exc:
        log.error("turn (%s: %s) failed; waiting for the next one:\n%s", trigger, reason,
                  "".join(traceback.format_exception(exc)))
        return TurnRecord(trigger, reason, wall, time.monotonic() - t0, ok=False,
                          error=f"{type(exc).__name__}: {exc}")
    log.info("turn (%s) ended after %.1f s", trigger, time.monotonic() - t0)
    return TurnRecord(trigger, reason, wall, time.monotonic() - t0, ok=True, result=result)


def install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """Make the first Ctrl-C or SIGTERM set ``stop`` (the turn halts before its next step and the loop
    returns); a second one acts as usual (KeyboardInterrupt, termination). Returns a function that
    restores the previous handlers. Call from the main thread."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum: int, frame: object) -> None:
        log.warning("%s: stopping after the current step (again to stop now)", signal.Signals(signum).name)
        stop.set()
        restore()

    for sig in previous:
        signal.signal(sig, handler)
    return restore
