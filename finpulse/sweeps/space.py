"""A :class:`~finpulse.sweeps.spec.SweepSpec` in Ray Tune's terms: the search space, the search
algorithm (random or Optuna TPE, behind a ``ConcurrencyLimiter``) and the trial scheduler.

Conditional parameters go the way each library allows: for random search a Ray ``tune.sample_from``
that returns None when the condition fails (an inactive parameter: the trial keeps the base value),
for TPE an Optuna define-by-run function that only suggests active parameters, so Optuna models
them as conditional. A conditional draw under random search is seeded from the sweep's seed and
the trial's unconditional values, so a seeded sweep draws the same configurations again.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from finpulse.sweeps.spec import Param, Scheduler, SweepSpec


def ray_domain(p: Param) -> Any:
    """The Ray Tune distribution of one parameter."""
    from ray import tune

    a = p.args
    return {"choice": lambda: tune.choice(list(a)), "uniform": lambda: tune.uniform(*a),
            "loguniform": lambda: tune.loguniform(*a), "randint": lambda: tune.randint(*a),
            "quniform": lambda: tune.quniform(*a)}[p.kind]()


class _Conditional:
    """``tune.sample_from`` body of a conditional parameter: its draw when ``when`` holds, else None."""

    def __init__(self, name: str, param: Param, unconditional: list[str], seed: int) -> None:
        self.name, self.param, self.unconditional, self.seed = name, param, unconditional, seed

    def __call__(self, spec: Any) -> Any:
        # attribute access on Ray's guard raises until a value is resolved, so Ray resolves those first
        values = {k: getattr(spec.config, k) for k in self.unconditional}
        if not self.param.holds(values):
            return None
        key = zlib.crc32(repr(sorted(values.items())).encode())
        rng = np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), key])
        return _plain(ray_domain(self.param).sample(random_state=rng))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def random_space(spec: SweepSpec) -> dict[str, Any]:
    """Ray's param_space for random search (``BasicVariantGenerator``)."""
    from ray import tune

    unconditional = [n for n, p in spec.params.items() if not p.when]
    return {n: tune.sample_from(_Conditional(n, p, unconditional, spec.search.seed)) if p.when else ray_domain(p)
            for n, p in spec.params.items()}


def suggest(trial: Any, name: str, p: Param) -> Any:
    """One Optuna suggestion for ``p`` (``randint``'s high is excluded, as in Ray)."""
    a = p.args
    if p.kind == "choice":
        return trial.suggest_categorical(name, list(a))
    if p.kind == "randint":
        return trial.suggest_int(name, a[0], a[1] - 1)
    if p.kind == "quniform":
        return trial.suggest_float(name, a[0], a[1], step=a[2])
    return trial.suggest_float(name, a[0], a[1], log=p.kind == "loguniform")


class OptunaSpace:
    """Optuna define-by-run: suggest each parameter whose conditions hold, in file order."""

    def __init__(self, params: dict[str, Param]) -> None:
        self.params = params

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.holds(chosen):
                chosen[name] = suggest(trial, name, p)


def search_algorithm(spec: SweepSpec) -> tuple[Any, dict[str, Any]]:
    """``(search_alg, param_space)``: random (seeded) or TPE (seeded), limited to ``max_concurrent`` trials."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = [dict(p) for p in spec.search.points] or None
    if spec.search.kind == "random":
        alg = BasicVariantGenerator(points_to_evaluate=points, random_state=spec.search.seed,
                                    max_concurrent=spec.budget.max_concurrent)
        return alg, random_space(spec)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(seed=spec.search.seed)
    alg = OptunaSearch(space=OptunaSpace(spec.params), metric=spec.metric, mode=spec.mode,
                       points_to_evaluate=points, sampler=sampler)
    return ConcurrencyLimiter(alg, max_concurrent=spec.budget.max_concurrent), {}


def trial_scheduler(s: Scheduler, max_t: int) -> Any:
    """ASHA or median stopping (decisions per epoch = per ``training_iteration``), or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    grace = min(s.grace_period, max_t)
    if s.kind == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=grace,
                             reduction_factor=s.reduction_factor)
    if s.kind == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=grace, min_samples_required=2)
    return FIFOScheduler()


def active(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched values without the inactive (None) conditional ones."""
    return {k: _plain(v) for k, v in config.items() if v is not None}
