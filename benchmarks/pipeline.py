"""Retraining loop benchmark (make bench-pipeline -> benchmarks/results/pipeline.json).

What it measures, on the embedded data after a quick bootstrap (``finpulse pipeline bootstrap --quick``:
prices, synthetic posts, a TFNS-tuned sentiment champion, a forecaster) in a fresh FinPulse home:

- ``loop_turn_s``: one full turn of ``finpulse pipeline run`` as users run it (a new process that
  starts its local Ray, takes the loop lock, runs every step), with the quick training knobs and no
  serving app: sentiment (kept: its labelled data is unchanged), ETL, scoring, ETL with scores,
  forecaster training, walk-forward evaluation of challenger and champion, drift reference, gate,
  promotion in the registry. Wall clock of the whole process, ``--reps`` turns: median, min, max.
  With an app, a turn adds the canary load and the configured soak (``soak_s``), which is a wait.
- ``resume_redo_steps``: one turn killed with SIGKILL right after each step's record is written, at
  every step boundary in turn (a new process each time, as a crashed pod is restarted), then run to
  the end: the number of steps whose work was started more than once (goal 0), with the kills made
  and the total wall clock.

The drift keys (``drift_false_alarm_rate``, ``drift_power_planted``, ``drift_job_s_1m_posts``, ...) are
written into the same file by ``benchmarks/drift.py``, which ``make bench-pipeline`` runs first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, print_table

REPO = Path(__file__).resolve().parents[1]
STEPS_WITHOUT_APP = ("sentiment", "etl", "score", "etl_with_scores", "train_forecaster", "evaluate", "reference",
                     "gate", "promote")


def child(mode: str, kill_after: str | None) -> None:
    """One process as a user's command would be: bootstrap, or one (possibly killed) turn."""
    from finpulse import pipeline
    from finpulse.config import get_settings
    from finpulse.loop.lock import RunLock, loop_lock_path
    from finpulse.loop.turn import LoopOptions, run_turn
    from finpulse.paths import data_paths
    from finpulse.runtime import connect

    connect()
    quick = pipeline.PipelineOptions().quick()
    if mode == "bootstrap":
        pipeline.run_pipeline(data_paths(), quick)
        return
    def hook(event: str, name: str) -> None:
        if event == "recorded" and name == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash right at the boundary after this step

    with RunLock(loop_lock_path(get_settings().home)):
        out = run_turn(data_paths(), LoopOptions.from_pipeline(quick, max_attempts=len(STEPS_WITHOUT_APP) + 2),
                       hook=hook)
    print("TURN " + json.dumps({"outcome": out.outcome, "summary": out.summary}, default=str), flush=True)


def run_child(home: str, mode: str, kill_after: str | None = None) -> tuple[float, dict[str, Any] | None, int]:
    """Wall clock, the turn summary (None when killed) and the exit code of one child process."""
    env = {**os.environ, "FINPULSE_HOME": home}
    cmd = [sys.executable, __file__, "--child", mode] + (["--kill-after", kill_after] if kill_after else [])
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,  # noqa: S603 - this script, no shell
                            start_new_session=True)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - t0
    with contextlib.suppress(ProcessLookupError):  # the local Ray a killed driver started dies with it
        os.killpg(proc.pid, signal.SIGKILL)
    summary = None
    for line in stdout.splitlines():
        if line.startswith("TURN "):
            summary = json.loads(line[5:])
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{mode} child failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return seconds, summary, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=["bootstrap", "turn"])
    ap.add_argument("--kill-after", help="step name: SIGKILL right after its record is written")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", choices=["turns", "resume"], help="measure one part only (the other keys are kept)")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.kill_after)
        return
    home = tempfile.mkdtemp(prefix="finpulse-bench-pipeline-")
    print(f"home: {home}; bootstrapping (quick) ...", flush=True)
    boot_s, _, _ = run_child(home, "bootstrap")
    result: dict[str, Any] = {"bootstrap_quick_s": boot_s}
    steps = list(STEPS_WITHOUT_APP)
    if args.only != "resume":
        turns = []
        for i in range(args.reps):
            seconds, summary, _ = run_child(home, "turn")
            turns.append(seconds)
            steps = summary["summary"]["steps_ran"]
            print(f"turn {i + 1}: {seconds:.1f} s, {summary['outcome']}, ran {steps}", flush=True)
        result["loop_turn_s"] = {"median": statistics.median(turns), "min": min(turns), "max": max(turns),
                                 "runs": turns, "steps": steps, "serving_app": False,
                                 "what": "one `finpulse pipeline run` turn as a new process (Ray start-up included), "
                                         "quick knobs, no app (no canary or soak)"}
    if args.only != "turns":
        result.update(resume(home, steps))
    merge_result("pipeline", result)
    rows = [("bootstrap_quick_s", boot_s)]
    if "loop_turn_s" in result:
        rows += [("loop_turn_s (median)", result["loop_turn_s"]["median"]),
                 ("loop_turn_s (min..max)", f"{result['loop_turn_s']['min']:.1f}..{result['loop_turn_s']['max']:.1f}")]
    if "resume_redo_steps" in result:
        rows += [("resume_redo_steps", result["resume_redo_steps"]), ("kills", result["resume"]["kills"]),
                 ("resume wall_s", result["resume"]["wall_s"])]
    print_table(rows, "retraining loop")


def resume(home: str, steps: list[str]) -> dict[str, Any]:
    """One turn SIGKILLed right after each step but the last in turn (a new process each time), then run to
    its end: how many steps had their work started twice."""
    kills, t0 = 0, time.monotonic()
    for name in steps[:-1]:
        _, summary, code = run_child(home, "turn", kill_after=name)
        if code != -signal.SIGKILL:
            raise RuntimeError(f"the turn was not killed after {name} (exit {code}): {summary}")
        kills += 1
        print(f"killed after step {name}", flush=True)
    _, summary, _ = run_child(home, "turn")
    s = summary["summary"]
    if s["steps_reused"] != steps[:-1]:
        raise RuntimeError(f"the last attempt should reuse {steps[:-1]}, reused {s['steps_reused']}")
    return {"resume_redo_steps": s["redone_total"],
            "resume": {"kills": kills, "boundaries": len(steps) - 1, "wall_s": time.monotonic() - t0,
                       "final_outcome": summary["outcome"], "attempts": s["attempt"], "steps": steps}}


def merge_result(name: str, updates: dict[str, Any]) -> Path:
    """Update ``results/<name>.json`` key by key (benchmarks/drift.py writes the drift keys to the same file)."""
    path = RESULTS / f"{name}.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**current, **updates}, indent=2, sort_keys=True, default=str) + "\n")
    return path


if __name__ == "__main__":
    main()
