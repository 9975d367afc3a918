"""Ray job: a Ray Tune search over the sentiment fine-tune (`finpulse tune-sentiment`; the same options).

`ray job submit --working-dir . -- python jobs/tune_sentiment.py --num-samples 8 --max-examples 900`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("tune-sentiment")
