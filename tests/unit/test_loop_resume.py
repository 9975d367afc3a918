"""A retraining turn killed with SIGKILL at every step boundary in turn, then rerun: every step runs once
overall, and MLflow ends with one parent run and one child per step (tests/support/loop_turn.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from finpulse import tracking
from finpulse.loop.records import turns_root
from finpulse.names import PIPELINE_EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "support" / "loop_turn.py"
STEPS = [f"s{i}" for i in range(7)]


def run_turn(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(SCRIPT), str(turns_root(home)), str(home / "work.log"), str(home / "results.jsonl"),
           *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def log_lines(home: Path) -> list[str]:
    path = home / "work.log"
    return path.read_text().split() if path.exists() else []


def results(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / "results.jsonl").read_text().splitlines()]


def turn_runs() -> tuple[list, list]:
    """(parent runs, child runs) of the pipeline experiment."""
    client = MlflowClient(tracking.configure())
    exp = client.get_experiment_by_name(PIPELINE_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_kill_at_every_boundary_then_rerun_runs_each_step_once(finpulse_home: Path) -> None:
    boundaries = [f"start:{s}" for s in STEPS] + ["finish:"]
    for k, boundary in enumerate(boundaries):
        done = run_turn(finpulse_home, "--kill-at", boundary)
        assert done.returncode == -signal.SIGKILL, (boundary, done.stderr[-2000:])
        assert log_lines(finpulse_home) == STEPS[:k], boundary  # the steps before the boundary, once each
    final = run_turn(finpulse_home)  # each earlier attempt died holding the lock: the kernel freed it
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert summary["attempt"] == len(boundaries) + 1
    assert (summary["ran"], summary["reused"], summary["redone"], summary["redone_total"]) == (0, 7, 0, 0)

    assert log_lines(finpulse_home) == STEPS  # every step ran exactly once overall
    rows = results(finpulse_home)
    fresh = [r["name"] for r in rows if not r["cached"]]
    assert fresh == STEPS and not any(r["redone"] for r in rows)
    assert {r["name"] for r in rows if r["cached"]} == set(STEPS)  # reused from the record, not rerun

    parents, children = turn_runs()
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["finpulse.outcome"] == "done"
    assert parents[0].data.metrics["attempts"] == len(boundaries) + 1
    assert sorted(c.data.tags["finpulse.step"] for c in children) == STEPS  # one child per step
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["finpulse.status"] for c in children} == {"completed"}
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)


def test_kill_between_record_and_child_run_repairs_the_child(finpulse_home: Path) -> None:
    killed = run_turn(finpulse_home, "--kill-at", "recorded:s2")
    assert killed.returncode == -signal.SIGKILL
    _, children = turn_runs()
    left_open = [c for c in children if c.data.tags["finpulse.step"] == "s2"]
    assert [c.info.status for c in left_open] == ["RUNNING"]

    assert run_turn(finpulse_home).returncode == 0
    assert log_lines(finpulse_home) == STEPS  # s2's record was written: not rerun
    _, children = turn_runs()
    assert sorted(c.data.tags["finpulse.step"] for c in children) == STEPS
    s2 = next(c for c in children if c.data.tags["finpulse.step"] == "s2")
    assert s2.info.status == "FINISHED" and s2.data.tags["finpulse.status"] == "completed"
    assert s2.data.metrics["output.rows"] == 2


def test_kill_inside_a_step_redoes_that_step_only_and_counts_it(finpulse_home: Path) -> None:
    killed = run_turn(finpulse_home, "--kill-at", "work:s3")
    assert killed.returncode == -signal.SIGKILL
    final = run_turn(finpulse_home)
    assert final.returncode == 0, final.stderr[-3000:]
    assert log_lines(finpulse_home) == [*STEPS[:4], "s3", *STEPS[4:]]  # s3's half-done work, then again
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert (summary["ran"], summary["reused"], summary["redone"], summary["redone_total"]) == (4, 3, 1, 1)
    redone = [r["name"] for r in results(finpulse_home) if r["redone"]]
    assert redone == ["s3"]
    _, children = turn_runs()
    s3 = sorted(c.info.status for c in children if c.data.tags["finpulse.step"] == "s3")
    assert s3 == ["FINISHED", "KILLED"]  # the killed attempt's child is marked, not left RUNNING
    assert sorted(c.data.tags["finpulse.step"] for c in children if c.info.status == "FINISHED") == STEPS
