"""When turns start: --every parsing, due times, drift precedence, surviving failures, stopping promptly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from finpulse.loop.schedule import DRIFT, SCHEDULE, format_every, next_turn, parse_every, run_every

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("6h", 21600), ("1d", 86400), ("1d12h", 129600),
                                           ("90s", 90), ("1w", 604800), (" 2H ", 7200), ("1h30m", 5400)])
def test_parse_every(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds
    assert parse_every(format_every(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "0m", "1x", "12h1d", "1h1h", "-1h", "1.5h", "6 h"])
def test_parse_every_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_every(text)


def test_due_times_and_drift_precedence() -> None:
    every = 3600.0
    assert next_turn(0.0, None, every, None) == (SCHEDULE, "first turn")
    assert next_turn(3599.0, 0.0, every, None) is None
    assert next_turn(3600.0, 0.0, every, None) == (SCHEDULE, "every 1h")
    assert next_turn(10.0, 0.0, every, "psi 0.41 on AAPL") == (DRIFT, "psi 0.41 on AAPL")
    assert next_turn(3600.0, 0.0, every, "psi 0.41") == (DRIFT, "psi 0.41")  # same moment: drift is recorded
    assert next_turn(10.0, 0.0, every, "psi 0.41", cooldown_s=600) is None  # too soon after the last turn
    assert next_turn(600.0, 0.0, every, "psi 0.41", cooldown_s=600) == (DRIFT, "psi 0.41")
    assert next_turn(3600.0, 0.0, every, "psi 0.41", cooldown_s=7200) == (SCHEDULE, "every 1h")


def test_a_failing_turn_does_not_stop_the_loop() -> None:
    calls: list[tuple[str, str]] = []

    def turn(trigger: str, reason: str) -> str:
        calls.append((trigger, reason))
        if len(calls) == 1:
            raise RuntimeError("train step failed")
        return f"turn {len(calls)}"

    history = run_every(0.2, turn, stop=threading.Event(), max_turns=3)
    assert [h.ok for h in history] == [False, True, True]
    assert history[0].error == "RuntimeError: train step failed" and history[2].result == "turn 3"
    assert [c[0] for c in calls] == [SCHEDULE] * 3
    assert history[2].started_at - history[1].started_at >= 0.19  # the schedule, not a retry storm


def test_drift_alarm_starts_a_turn_before_the_schedule_and_says_why() -> None:
    alarms = iter([None, "psi 0.5 on TSLA"])
    broken = {"n": 0}

    def alarm() -> str | None:
        broken["n"] += 1
        if broken["n"] == 1:
            raise ConnectionError("prometheus down")  # read as no alarm
        return next(alarms, None)

    started = time.monotonic()
    history = run_every(3600, lambda t, r: None, stop=threading.Event(), trigger_fn=alarm, poll_s=0.05,
                        max_turns=2)
    assert [(h.trigger, h.reason) for h in history] == [(SCHEDULE, "first turn"), (DRIFT, "psi 0.5 on TSLA")]
    assert time.monotonic() - started < 30


def test_stop_event_ends_the_loop_within_a_second() -> None:
    stop, started = threading.Event(), threading.Event()
    history: list = []
    t = threading.Thread(target=lambda: history.extend(
        run_every(3600, lambda tr, r: started.set(), stop=stop, trigger_fn=lambda: None, poll_s=3600)))
    t.start()
    assert started.wait(10)
    t0 = time.monotonic()
    stop.set()
    t.join(timeout=1.0)
    assert not t.is_alive() and time.monotonic() - t0 < 1.0
    assert len(history) == 1


LOOP = """
import threading, json
from finpulse.loop.schedule import install_stop_signals, run_every
stop = threading.Event()
install_stop_signals(stop)
history = run_every(3600, lambda t, r: print("turn", t, r, flush=True), stop=stop, poll_s=1)
print(json.dumps([h.trigger for h in history]), flush=True)
"""


def test_sigterm_stops_the_loop_promptly() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", LOOP], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "turn schedule first turn"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out.strip() == '["schedule"]'  # a clean return, not a kill
    assert time.monotonic() - t0 < 1.5
