"""Ray job: train the LSTM forecaster with Ray Train (`finpulse train-forecaster`; the same options).

`ray job submit --working-dir . -- python jobs/train_forecaster.py --num-workers 2`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("train-forecaster")
