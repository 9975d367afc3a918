"""One retraining turn at a time, with a lock a crash cannot leave behind.

``flock`` locks belong to an open file, so the kernel drops the lock when its holder dies, however it
dies (SIGKILL, OOM, a lost pod): there is no stale lock to clean up and no pid file to second-guess.
The lock file also records who holds it (pid, host, start time, turn), which a refused caller reports.
It serialises processes that share a file system: on a cluster, the drivers on the Ray head.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any


def loop_lock_path(home: str | Path) -> Path:
    """The loop's lock file in a FinPulse home (pass ``get_settings().home``)."""
    return Path(home) / "pipeline" / "loop.lock"


class LoopBusy(RuntimeError):
    """Another process holds the loop's lock; ``holder`` is what it recorded (None if unreadable)."""

    def __init__(self, path: Path, holder: dict[str, Any] | None) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"a retraining turn is already running ({describe(holder)}; lock {path})")


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started_at", 0)))
    turn = f", turn {holder['turn_id']}" if holder.get("turn_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {since}{turn}"


class RunLock:
    """An exclusive, non-blocking lock on ``path``; use as ``with RunLock(path, turn_id=...) as lock:``.

    Acquiring raises :class:`LoopBusy` at once when another process holds it (a scheduler skips that
    slot rather than queueing turns). :meth:`note` updates the holder record, e.g. with the turn id
    once the turn is known.
    """

    def __init__(self, path: str | Path, *, turn_id: str | None = None) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._holder: dict[str, Any] = {"turn_id": turn_id}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LoopBusy(self.path, holder) from None
        self._fd = fd
        self._holder.update(pid=os.getpid(), host=socket.gethostname(), started_at=time.time())
        self._write()
        return self

    def note(self, **fields: Any) -> None:
        """Add to the holder record (``turn_id=...``) while holding the lock."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        self._holder.update(fields)
        self._write()

    def release(self) -> None:
        """Clear the record and unlock. The file stays: unlinking it would let two processes lock
        two different files of the same name."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _write(self) -> None:
        data = json.dumps(self._holder, sort_keys=True).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def holder(path: str | Path) -> dict[str, Any] | None:
        """Who holds the lock at ``path`` now, or None when it is free (whatever the file says)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read(fd) or {}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _read(fd: int) -> dict[str, Any] | None:
    """The holder record, or None while it is being written (or empty)."""
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"null")
    except (OSError, ValueError):
        return None
