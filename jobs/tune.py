"""Ray job: a Ray Tune sweep from a sweep file (`finpulse tune`; the same options; the file names the model).

`ray job submit --working-dir . -- python jobs/tune.py --space finpulse/sweeps/examples/sentiment.yaml --set budget.samples=16`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("tune")
