"""A turn of dummy steps run in its own process, killed with SIGKILL at a chosen boundary.

``python tests/support/loop_turn.py ROOT LOG RESULTS [--kill-at EVENT:STEP] [--steps N]``: takes the loop
lock, resumes (or starts) a turn under ROOT, runs steps s0..s{N-1} (each appends its name to LOG and
feeds its output version to the next step's inputs), appends each StepResult to RESULTS (JSON lines),
then finishes the turn. ``--kill-at start:s3`` dies just before s3 runs, ``recorded:s2`` between s2's
record and its child run's end, ``work:s3`` inside s3 after its work, ``finish:`` just before the end record. It uses the runner's generic
hook, as production code offers it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from finpulse.loop.lock import RunLock, loop_lock_path
from finpulse.loop.steps import Turn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("log")
    ap.add_argument("results")
    ap.add_argument("--kill-at", default="")
    ap.add_argument("--steps", type=int, default=7)
    args = ap.parse_args()

    def hook(event: str, name: str) -> None:
        if f"{event}:{name}" == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def work(name: str, version: str) -> dict:
        with open(args.log, "a") as f:
            f.write(name + "\n")
        hook("work", name)  # --kill-at work:sK dies inside step sK, after its work
        return {"version": f"{name}-{version}", "rows": len(name)}

    root = Path(args.root)
    with RunLock(loop_lock_path(root.parent)) as lock:
        turn = Turn.resume_or_start(root, "test", reason=f"kill at {args.kill_at or 'nothing'}", hook=hook,
                                    max_attempts=100)
        lock.note(turn_id=turn.turn_id)
        version = "raw-v1"
        for i in range(args.steps):
            name = f"s{i}"
            result = turn.step(name, {"upstream": version}, lambda n=name, v=version: work(n, v))
            version = result.outputs["version"]
            with open(args.results, "a") as f:
                f.write(json.dumps({**dataclasses.asdict(result), "pid": os.getpid()}) + "\n")
        turn.finish("done", reasons=["all steps ran"])
        print(json.dumps(turn.summary()))


if __name__ == "__main__":
    sys.exit(main())
