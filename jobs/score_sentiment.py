"""Ray job: score posts with a sentiment model on a Ray Data actor pool (`finpulse score`; the same options).

`ray job submit --working-dir . -- python jobs/score_sentiment.py --model finpulse-sentiment@champion --num-actors 2`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("score")
