"""A retraining turn as a chain of recorded steps, so a crash at any point costs at most the step it hit.

Each step is keyed by its name and input versions (:func:`~finpulse.loop.records.step_key`). Before a
step runs, a ``running`` record is written; after it, a ``completed`` (or ``failed``) record replaces it
atomically. A rerun of the same turn returns completed records without calling the step again, and
repeats only a step that failed or was interrupted. The turn's files live under
``<home>/pipeline/turns/<turn_id>/``; the turn is also an MLflow parent run (experiment
``finpulse-pipeline``) with one child run per executed step, tagged with its key, status and decision.

Order inside a step, and what a crash between two lines leaves (the resume repairs each case):
child run opened -> ``running`` record -> ``fn()`` -> ``completed`` record -> child run finished.
A child left RUNNING beside a completed record is finished from the record; any other RUNNING child
is marked KILLED. So a kill at a step boundary leaves exactly one child per step.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finpulse import tracking
from finpulse.loop import records
from finpulse.loop.records import COMPLETED, FAILED, RUNNING, TURN_FILE
from finpulse.names import PIPELINE_EXPERIMENT

StepHook = Callable[[str, str], None]
"""Called as ``hook(event, step_name)`` with event ``start`` (a step is about to run), ``recorded`` (its
record is written), ``done`` (its child run is finished) or ``finish`` (the end record is next). A
generic callback: tests use it to kill the process at each boundary."""


class TurnStopped(RuntimeError):
    """A stop was requested (Ctrl-C, SIGTERM): the turn halts before its next step; a rerun resumes it."""


@dataclass(frozen=True)
class StepResult:
    """What a step produced, whether it ran now (``cached`` False) or earlier in this turn (True).

    ``redone`` is True when this exact step (same key) had started before in this turn and not
    completed: the work a crash or a failure cost. ``starts`` counts how often its fn was started.
    """

    name: str
    key: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    status: str
    started_at: float
    ended_at: float | None
    cached: bool = False
    redone: bool = False
    starts: int = 1
    attempt: int = 1
    child_run_id: str | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    @property
    def decision(self) -> Any:
        """A decision step (a gate) puts ``decision`` and ``reasons`` in its outputs."""
        return self.outputs.get("decision")

    @property
    def reasons(self) -> list[str]:
        return list(self.outputs.get("reasons", []))

    @classmethod
    def from_record(cls, record: dict[str, Any], *, cached: bool = False) -> StepResult:
        fields = {k: record.get(k) for k in cls.__dataclass_fields__ if k not in ("cached", "redone")}
        return cls(**fields, cached=cached, redone=False)


@dataclass
class _Counts:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Turn:
    """One turn of the loop; make it with :meth:`start` or :meth:`resume_or_start`, end it with :meth:`finish`.

    ``stop``: a set event makes the next :meth:`step` raise :class:`TurnStopped` (the turn stays
    resumable). ``hook``: see :data:`StepHook`.
    """

    def __init__(self, folder: Path, record: dict[str, Any], *, stop: threading.Event | None = None,
                 hook: StepHook | None = None) -> None:
        self.folder = folder
        self._record = record
        self._stop = stop
        self._hook = hook or (lambda event, name: None)
        self._counts = _Counts()

    # --- making a turn ----------------------------------------------------------------------------

    @classmethod
    def start(cls, root: str | Path, trigger: str, *, reason: str = "", stop: threading.Event | None = None,
              hook: StepHook | None = None) -> Turn:
        """A new turn under ``root`` (``records.turns_root(home)``), started because of ``trigger``."""
        turn_id = records.new_turn_id()
        now = time.time()
        record = {"turn_id": turn_id, "trigger": trigger, "reason": reason, "started_at": now,
                  "status": RUNNING, "parent_run_id": None, "attempts": [_attempt(trigger, reason, now)]}
        turn = cls(Path(root) / turn_id, record, stop=stop, hook=hook)
        turn._save()  # the folder first: a crash before the run exists leaves a turn that resumes
        turn._open_parent_run()
        return turn

    @classmethod
    def resume_or_start(cls, root: str | Path, trigger: str, *, reason: str = "", max_attempts: int = 3,
                        stop: threading.Event | None = None, hook: StepHook | None = None) -> Turn:
        """Resume the newest turn if it is unfinished, else start a new one.

        Only the newest turn is considered: an older unfinished one was given up on. A turn that has
        already had ``max_attempts`` attempts is finished as ``abandoned`` (a step that fails on every
        try must not hold the loop forever) and a new turn starts.
        """
        found = records.list_turns(Path(root))
        if found and found[0]["status"] == RUNNING:
            turn = cls(Path(root) / found[0]["turn_id"], found[0], stop=stop, hook=hook)
            if len(turn._record["attempts"]) < max_attempts:
                turn._resume(trigger, reason)
                return turn
            turn._ensure_parent_run()
            last = [r for r in turn.step_records() if r["status"] != COMPLETED]
            why = f"{len(turn._record['attempts'])} attempts" + (f"; last: {last[-1]['name']}: {last[-1].get('error')}"
                                                                 if last else "")
            turn.finish("abandoned", reasons=[why], status="FAILED")
        return cls.start(root, trigger, reason=reason, stop=stop, hook=hook)

    @classmethod
    def load(cls, root: str | Path, turn_id: str) -> Turn:
        """A turn's records for reading (reports, the benchmark); stepping it is resuming it."""
        folder = Path(root) / turn_id
        record = records.read_json(folder / TURN_FILE)
        if record is None:
            raise FileNotFoundError(f"no turn {turn_id} under {root}")
        return cls(folder, record)

    # --- state ------------------------------------------------------------------------------------

    @property
    def turn_id(self) -> str:
        return self._record["turn_id"]

    @property
    def trigger(self) -> str:
        return self._record["trigger"]

    @property
    def parent_run_id(self) -> str | None:
        return self._record["parent_run_id"]

    @property
    def attempt(self) -> int:
        return len(self._record["attempts"])

    @property
    def finished(self) -> bool:
        return self._record["status"] != RUNNING

    @property
    def outcome(self) -> str | None:
        return self._record.get("outcome")

    def step_records(self) -> list[dict[str, Any]]:
        return records.step_records(self.folder)

    def summary(self) -> dict[str, Any]:
        """Steps this attempt ran (``redone`` of them repeated a started step), reused and saw fail;
        ``redone_total``: repeated steps over all attempts (the benchmark's ``resume_redo_steps``)."""
        c = self._counts
        redone_total = sum(max(r["starts"] - 1, 0) for r in self.step_records() if r["status"] == COMPLETED)
        return {"turn_id": self.turn_id, "attempt": self.attempt, "ran": len(c.ran), "reused": len(c.reused),
                "redone": len(c.redone), "failed": len(c.failed), "redone_total": redone_total,
                "steps_ran": c.ran, "steps_reused": c.reused, "outcome": self.outcome}

    # --- steps ------------------------------------------------------------------------------------

    def step(self, name: str, inputs: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> StepResult:
        """Run ``fn`` unless this turn already completed the step with the same inputs.

        ``inputs`` are the step's input versions (JSON); ``fn`` returns JSON outputs, with ``decision``
        and ``reasons`` when the step decides something. A failing ``fn`` leaves a ``failed`` record
        and re-raises; the rerun repeats it.
        """
        if self.finished:
            raise RuntimeError(f"turn {self.turn_id} is finished ({self.outcome}); start a new one")
        key = records.step_key(name, inputs)
        path = records.step_path(self.folder, name, key)
        before = records.read_json(path)
        if before is not None and before["status"] == COMPLETED:
            self._counts.reused.append(name)
            return StepResult.from_record(before, cached=True)
        if self._stop is not None and self._stop.is_set():
            raise TurnStopped(f"turn {self.turn_id} stopped before step {name!r}; a rerun resumes it")
        self._hook("start", name)
        starts = (before["starts"] + 1) if before else 1
        child = tracking.child_run(self._parent(), name, tags={
            "finpulse.kind": "pipeline-step", "finpulse.step": name, "finpulse.step_key": key,
            "finpulse.status": RUNNING, "finpulse.cached": "false", "finpulse.attempt": str(self.attempt)})
        child.log_params({f"input.{k}": v for k, v in inputs.items()})
        record = {"name": name, "key": key, "inputs": inputs, "outputs": {}, "status": RUNNING,
                  "started_at": time.time(), "ended_at": None, "starts": starts, "attempt": self.attempt,
                  "child_run_id": child.run_id, "error": None}
        records.write_json(path, record)
        self._counts.ran.append(name)
        if before:
            self._counts.redone.append(name)
        try:
            outputs = fn()
            if not isinstance(outputs, dict):
                raise TypeError(f"step {name!r} returned {type(outputs).__name__}, not a dict of outputs")
            json.dumps(outputs)  # refuse non-JSON outputs here, not at the next resume
        except BaseException as exc:
            self._fail(path, record, exc)
            raise
        record.update(outputs=outputs, status=COMPLETED, ended_at=time.time())
        records.write_json(path, record)
        self._hook("recorded", name)
        _finish_child(record)
        self._hook("done", name)
        result = StepResult.from_record(record)
        return StepResult(**{**asdict(result), "redone": before is not None})

    def _fail(self, path: Path, record: dict[str, Any], exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        record.update(status=FAILED, ended_at=time.time(), error=error,
                      traceback="".join(traceback.format_exception(exc))[-4000:])
        records.write_json(path, record)
        self._counts.failed.append(record["name"])
        _finish_child(record)
        tracking.annotate_run(self.parent_run_id, tags={"finpulse.failed_step": record["name"],
                                                        "finpulse.last_error": error})

    # --- ending -----------------------------------------------------------------------------------

    def finish(self, outcome: str, *, reasons: list[str] | tuple[str, ...] = (), status: str = "FINISHED"
               ) -> dict[str, Any]:
        """Write the end record (the turn is then never resumed) and end the parent run with ``status``.

        ``outcome`` says what the turn did (``promoted``, ``rolled_back``, ``rejected``, ...), ``reasons``
        why. Returns the turn record.
        """
        self._hook("finish", "")
        summary = self.summary()
        self._record.update(status="finished", outcome=outcome, reasons=list(reasons), ended_at=time.time(),
                            run_status=status, summary=summary)
        records.write_json(self.folder / TURN_FILE, self._record)
        parent = self._parent()
        parent.set_tags({"finpulse.outcome": outcome, "finpulse.reasons": json.dumps(list(reasons))})
        parent.log_metrics({"steps_ran": summary["ran"], "steps_reused": summary["reused"],
                            "steps_redone_total": summary["redone_total"], "attempts": self.attempt,
                            "turn_s": self._record["ended_at"] - self._record["started_at"]})
        parent.log_dict(self._record, "turn.json")
        parent.end(status)
        return dict(self._record)

    # --- internals --------------------------------------------------------------------------------

    def _save(self) -> None:
        records.write_json(self.folder / TURN_FILE, self._record)

    def _parent(self) -> tracking.RunLogger:
        return tracking.RunLogger(self._ensure_parent_run(), tracking.configure())

    def _open_parent_run(self) -> str:
        run = tracking.open_run(PIPELINE_EXPERIMENT, self.turn_id, tags={
            "finpulse.kind": "pipeline-turn", "finpulse.turn_id": self.turn_id,
            "finpulse.trigger": self.trigger, "finpulse.reason": self._record["reason"][:5000]})
        self._record["parent_run_id"] = run.run_id
        self._save()
        return run.run_id

    def _ensure_parent_run(self) -> str:
        return self.parent_run_id or self._open_parent_run()

    def _resume(self, trigger: str, reason: str) -> None:
        """Count the attempt, then tidy the runs a crash left open (see the module docstring)."""
        self._record["attempts"].append(_attempt(trigger, reason, time.time()))
        self._save()
        parent_id = self._ensure_parent_run()
        for rec in self.step_records():
            if rec["status"] in (COMPLETED, FAILED) and tracking.run_status(rec["child_run_id"]) == "RUNNING":
                _finish_child(rec)
        tracking.end_unfinished_children(parent_id, status="KILLED")
        tracking.annotate_run(parent_id, tags={"finpulse.attempts": str(self.attempt)})


def _attempt(trigger: str, reason: str, at: float) -> dict[str, Any]:
    return {"trigger": trigger, "reason": reason, "at": at, "pid": os.getpid(), "host": socket.gethostname()}


def _finish_child(record: dict[str, Any]) -> None:
    """Log a step's outcome on its child run and end it (FINISHED, or FAILED for a failed step)."""
    child = tracking.RunLogger(record["child_run_id"], tracking.configure())
    outputs = record["outputs"]
    tags = {"finpulse.status": record["status"]}
    if "decision" in outputs:
        tags["finpulse.decision"] = outputs["decision"]
        tags["finpulse.reasons"] = json.dumps(outputs.get("reasons", []))
    if record.get("error"):
        tags["finpulse.error"] = record["error"]
    child.set_tags(tags)
    child.log_metrics({"duration_s": record["ended_at"] - record["started_at"],
                       **{f"output.{k}": v for k, v in outputs.items()}})
    child.log_dict(record, "step.json")
    child.end("FINISHED" if record["status"] == COMPLETED else "FAILED")
