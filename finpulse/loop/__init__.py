"""The retraining loop's machinery, free of models, Ray and Serve (the concrete turn lives in the pipeline):

- :mod:`~finpulse.loop.steps`: :class:`~finpulse.loop.steps.Turn`, a resumable chain of recorded steps,
  one MLflow parent run per turn and a child run per step;
- :mod:`~finpulse.loop.records`: the turn's files (atomic JSON records, step keys);
- :mod:`~finpulse.loop.lock`: :class:`~finpulse.loop.lock.RunLock`, one turn at a time;
- :mod:`~finpulse.loop.schedule`: ``--every`` parsing and :func:`~finpulse.loop.schedule.run_every`.
"""
