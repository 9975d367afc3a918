"""Run a sweep: Ray Tune with the spec's search algorithm and scheduler, results and checkpoints under
``ray_storage()/<name>`` (local or ``s3://``), one MLflow parent run per sweep with a child run per trial.

A sweep has a name (the Ray experiment name and the MLflow parent run's name). The spec is saved next
to Tune's state (``sweep.json``), so ``resume=True`` needs only the name: ``Tuner.restore`` picks the
experiment up, finished trials keep their results, unfinished ones start again, errored ones restart.
Ctrl-C (SIGINT) lets Tune save its state and stop; :class:`SweepInterrupted` then says how to resume.
The best configuration is retrained with Ray Train and registered as challenger (``register=True``);
promotion stays the gate's job (``finpulse evaluate`` + ``finpulse promote``, or the pipeline).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from finpulse import storage, tracking
from finpulse.runtime import sigint_restored
from finpulse.sweeps.models import Target, build_target
from finpulse.sweeps.report import leaderboard, log_leaderboard
from finpulse.sweeps.space import search_algorithm, trial_scheduler
from finpulse.sweeps.spec import SweepSpec, SweepSpecError, parse_spec

SPEC_FILE = "sweep.json"
SWEEP_TAG = "finpulse.sweep"


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial ended (Ctrl-C, a lost driver); its state is saved."""


@dataclass
class SweepOutcome:
    name: str
    path: str  # the Ray experiment: <ray storage>/<name>
    metric: str
    mode: str
    best_params: dict[str, Any]  # the searched values of the best trial
    best_metric: float
    leaderboard: pd.DataFrame  # one row per trial, best first (see finpulse.sweeps.report.leaderboard)
    wall_s: float
    parent_run_id: str
    registered: str | None = None  # registry label of the retrained best (challenger), when register
    retrain: Any = None  # the model's retrain result


def sweep_path(name: str) -> str:
    return storage.join(storage.ray_storage().uri, name)


def _tuner(spec: SweepSpec, target: Target, name: str, parent: tracking.RunLogger, resume: bool) -> Any:
    from ray import tune

    rs = storage.ray_storage()
    runnable = tune.with_resources(tune.with_parameters(target.trainable, parent=parent, **target.shared),
                                   target.resources)
    path = storage.join(rs.storage_path, name) if rs.filesystem is not None else sweep_path(name)
    if resume:
        return tune.Tuner.restore(path, runnable, resume_unfinished=True, restart_errored=True,
                                  storage_filesystem=rs.filesystem)
    alg, space = search_algorithm(spec)
    config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=alg, num_samples=spec.budget.samples,
                             scheduler=trial_scheduler(spec.scheduler, target.max_t), reuse_actors=target.reuse_actors)
    return tune.Tuner(runnable, param_space=space, tune_config=config,
                      run_config=tune.RunConfig(name=name, verbose=0, **rs.run_config_args()))


def _start(spec: SweepSpec, name: str | None, resume: bool) -> tuple[SweepSpec, str]:
    """The spec to run and its name; refuses to resume what is not there or to overwrite what is."""
    from ray import tune

    rs = storage.ray_storage()
    name = name or spec.name or f"{spec.model}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    where = storage.join(rs.storage_path, name) if rs.filesystem is not None else sweep_path(name)
    there = tune.Tuner.can_restore(where, storage_filesystem=rs.filesystem)
    if resume and not there:
        raise SweepSpecError(f"no sweep named {name!r} to resume at {sweep_path(name)}")
    if not resume and there:
        raise SweepSpecError(f"a sweep named {name!r} exists at {sweep_path(name)}: resume it "
                             f"(--resume {name}) or pick another --name")
    spec_uri = storage.join(sweep_path(name), SPEC_FILE)
    if resume:
        return parse_spec(storage.read_json(spec_uri), spec_uri), name
    storage.write_json(spec_uri, spec.model_dump(mode="json"))
    return spec, name


def _parent(spec: SweepSpec, name: str, target: Target, resume: bool) -> tracking.RunLogger:
    """The sweep's MLflow parent run: found by the sweep tag when resuming, else opened."""
    experiment = target.experiment
    found = tracking.find_runs(experiment, f"tags.`{SWEEP_TAG}` = '{name}' and tags.`finpulse.kind` = 'tune'", 1)
    if resume and found:
        return tracking.RunLogger(found[0]["run_id"], tracking.configure())
    parent = tracking.open_run(experiment, name, tags={"finpulse.kind": "tune", SWEEP_TAG: name})
    parent.log_params({"model": spec.model, "metric": spec.metric, "mode": spec.mode, "search": spec.search.kind,
                       "seed": spec.search.seed, "scheduler": spec.scheduler.kind, **spec.budget.model_dump(),
                       **target.describe})
    parent.log_dict(spec.model_dump(mode="json"), "sweep.json")
    return parent


def run_sweep(spec: SweepSpec | dict[str, Any], *, name: str | None = None, resume: bool = False,
              register: bool = True, data: Any = None) -> SweepOutcome:
    """Run (or with ``resume`` continue) a sweep and return its outcome; with ``register`` retrain the best
    and register it as challenger. ``data``: the forecaster's features frame or the sentiment Splits
    (None: loaded as the spec's ``options`` say). Starts a local Ray when none is connected."""
    from finpulse.runtime import connect

    spec = spec if isinstance(spec, SweepSpec) else parse_spec(spec)
    spec, name = _start(spec, name, resume)
    connect()
    target = build_target(spec, data)
    parent = _parent(spec, name, target, resume)
    start = time.perf_counter()
    with sigint_restored(), storage.ray_storage().reaching(f"running sweep {name}"):
        grid = _tuner(spec, target, name, parent, resume).fit()
    board = leaderboard(grid.experiment_path, spec, filesystem=grid.filesystem)
    tracking.end_unfinished_children(parent.run_id)  # trials a scheduler stopped mid-way (or an interrupt)
    done = board["status"].isin(["TERMINATED", "ERROR"]).sum()
    if done < spec.budget.samples:
        raise SweepInterrupted(f"sweep {name!r} stopped with {done} of {spec.budget.samples} trials ended; "
                               f"its state is saved: `finpulse tune --resume {name}` continues it")
    ran = board.dropna(subset=[f"best_{spec.metric}"])
    if ran.empty:
        raise RuntimeError(f"no trial of sweep {name!r} reported {spec.metric}: see MLflow run {parent.run_id}")
    best = dict(ran.iloc[0]["config"])
    outcome = SweepOutcome(name, sweep_path(name), spec.metric, spec.mode, best,
                           float(ran.iloc[0][f"best_{spec.metric}"]), board, time.perf_counter() - start,
                           parent.run_id)
    log_leaderboard(parent, board, spec)
    parent.log_metrics({f"best_{spec.metric}": outcome.best_metric, "wall_s": outcome.wall_s, "trials": len(board)})
    parent.log_dict(json.loads(json.dumps(best, default=str)), "best_params.json")
    if register:
        outcome.registered, outcome.retrain = target.retrain(best, parent.run_id)
        if outcome.registered:
            parent.set_tags({"challenger": outcome.registered})
    parent.end()
    return outcome
