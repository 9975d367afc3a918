"""Ray job: the promotion gate, challenger -> champion (`finpulse promote`; the same options).

`ray job submit --working-dir . -- python jobs/promote.py --margin 0.01`
"""

from finpulse.cli import run_job

if __name__ == "__main__":
    run_job("promote")
