"""One turn at a time: a second process is refused with the holder's name; SIGKILL frees the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finpulse.loop.lock import LoopBusy, RunLock, loop_lock_path

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from finpulse.loop.lock import RunLock
with RunLock(sys.argv[1], turn_id="turn-A") as lock:
    lock.note(step="train")
    print("held", flush=True)
    time.sleep(120)
"""
TRY = """
import sys
from finpulse.loop.lock import LoopBusy, RunLock
try:
    RunLock(sys.argv[1]).acquire()
except LoopBusy as e:
    print(e)
    sys.exit(3)
print("acquired")
"""


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True, **kw)


def test_second_process_is_refused_until_the_holder_is_killed(tmp_path: Path) -> None:
    path = loop_lock_path(tmp_path)
    holder = python(HOLD, str(path))
    try:
        assert holder.stdout.readline().strip() == "held"
        other = python(TRY, str(path))
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 3, out
        assert f"pid {holder.pid}" in out and "turn turn-A" in out and "already running" in out
        with pytest.raises(LoopBusy) as busy:
            RunLock(path).acquire()
        assert busy.value.holder["pid"] == holder.pid and busy.value.holder["step"] == "train"
        assert RunLock.holder(path)["turn_id"] == "turn-A"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert RunLock.holder(path) is None  # the file still names turn-A, but nobody holds it
    after = python(TRY, str(path))
    out, _ = after.communicate(timeout=60)
    assert after.returncode == 0 and out.strip() == "acquired"


def test_context_manager_releases_and_reacquires(tmp_path: Path) -> None:
    path = tmp_path / "loop.lock"
    with RunLock(path, turn_id="t1") as lock:
        assert lock.held and RunLock.holder(path)["turn_id"] == "t1"
        with pytest.raises(LoopBusy, match="turn t1"):
            RunLock(path).acquire()  # a second open file description: refused even in-process
    assert not lock.held and RunLock.holder(path) is None
    with RunLock(path) as again:
        again.note(turn_id="t2")
        assert RunLock.holder(path)["turn_id"] == "t2"
    with pytest.raises(RuntimeError, match="not held"):
        again.note(turn_id="t3")
