"""Tune sweeps a researcher runs from a file: the spec (:mod:`.spec`), its translation into Ray Tune
and Optuna (:mod:`.space`), the run with resume (:mod:`.run`) and the leaderboard (:mod:`.report`).

In process::

    from finpulse.sweeps import SweepSpec, load_spec, run_sweep
    outcome = run_sweep(load_spec("finpulse/sweeps/examples/forecaster.yaml"), name="lstm-1", register=False)
"""

from finpulse.sweeps.run import SweepInterrupted, SweepOutcome, run_sweep
from finpulse.sweeps.spec import SweepSpec, SweepSpecError, example_path, load_spec, parse_spec

__all__ = ["SweepInterrupted", "SweepOutcome", "SweepSpec", "SweepSpecError", "example_path", "load_spec",
           "parse_spec", "run_sweep"]
