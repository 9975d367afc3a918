"""Ray job: walk-forward evaluation of a registered forecaster (`finpulse evaluate`; the same options).

`ray job submit --working-dir . -- python jobs/evaluate.py --k 4`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("evaluate")
