"""Ray job: a Ray Tune search over the forecaster (`finpulse tune`; the same options).

`ray job submit --working-dir . -- python jobs/tune_forecaster.py --num-samples 8`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("tune")
