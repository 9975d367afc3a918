"""Ray job: the ETL: validate, dedupe, align, score, daily features (`finpulse etl`; the same options).

`ray job submit --working-dir . -- python jobs/etl.py --embedded`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("etl")
