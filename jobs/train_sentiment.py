"""Ray job: fine-tune the sentiment classifier with Ray Train (`finpulse train-sentiment`; the same options).

`ray job submit --working-dir . -- python jobs/train_sentiment.py --dataset tfns --data $(realpath ../shared/data)`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("train-sentiment")
