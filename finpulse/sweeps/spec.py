"""A sweep as a file: what to search, how to search it, and with how much.

A researcher writes one YAML file (``finpulse/sweeps/examples/*.yaml`` ship as examples) and
:func:`load_spec` turns it into a :class:`SweepSpec`, refusing a bad file with ONE
:class:`SweepSpecError` that names every bad field by its path (``params.lr.loguniform: low must be > 0``)
before Ray starts. Model-specific checks (``base`` and parameter names against the model's config
class, the metric against what the model reports) live with each model in :mod:`finpulse.sweeps.models`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class SweepSpecError(ValueError):
    """A sweep file that cannot run; the message names each bad field by its path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One searched hyperparameter: exactly one distribution, active only ``when`` its conditions hold.

    ``uniform``/``loguniform``: ``[low, high]``; ``randint``: ``[low, high)`` integers; ``quniform``:
    ``[low, high, q]``; ``when``: ``{other_param: value or [values]}`` (all must hold)."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    quniform: tuple[float, float, float] | None = None
    when: dict[str, Any] = Field(default_factory=dict)

    @field_validator("choice")
    @classmethod
    def _choice(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and not v:
            raise ValueError("needs at least one value")
        if v is not None and not all(isinstance(x, str | int | float | bool) for x in v):
            raise ValueError("values must be plain numbers, strings or booleans")
        return v

    @field_validator("uniform", "quniform")
    @classmethod
    def _range(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and not v[0] <= v[1]:
            raise ValueError(f"low {v[0]} must be <= high {v[1]}")
        if v is not None and len(v) == 3 and v[2] <= 0:
            raise ValueError(f"q {v[2]} must be > 0")
        return v

    @field_validator("loguniform")
    @classmethod
    def _log(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] <= 0:
            raise ValueError(f"low must be > 0 (got {v[0]})")
        if v is not None and not v[0] <= v[1]:
            raise ValueError(f"low {v[0]} must be <= high {v[1]}")
        return v

    @field_validator("randint")
    @classmethod
    def _int(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"low {v[0]} must be < high {v[1]} (high is excluded)")
        return v

    @model_validator(mode="after")
    def _one(self) -> Param:
        given = [d for d in DISTRIBUTIONS if getattr(self, d) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(d for d in DISTRIBUTIONS if getattr(self, d) is not None)

    @property
    def args(self) -> Any:
        return getattr(self, self.kind)

    def holds(self, config: dict[str, Any]) -> bool:
        """Whether this parameter is active in ``config`` (every ``when`` condition met)."""
        return all(config.get(k) in (v if isinstance(v, list) else [v]) for k, v in self.when.items())

    def highest(self) -> float:
        """The largest value this parameter can take (a scheduler's ``max_t`` when it is the epoch count)."""
        if self.kind == "choice":
            return max(float(x) for x in self.args)
        return float(self.args[1] - 1 if self.kind == "randint" else self.args[1])


class Budget(_Strict):
    samples: int = Field(8, ge=1, description="trials in all (points included)")
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_epochs: int | None = Field(None, ge=1, description="epochs a trial may run (default: the model's)")


class Scheduler(_Strict):
    """When to stop a trial early: ASHA, median stopping, or FIFO (never; the model's patience still applies).

    Synchronous HyperBand (and BOHB) pause trials at each rung and resume them from a checkpoint; FinPulse's
    trials train in process without one, so a paused trial would start again from epoch 0: refused, with ASHA
    (HyperBand's asynchronous form, which only stops) as the way to get it."""

    kind: Literal["asha", "hyperband", "median", "fifo"] = "asha"  # hyperband: refused with the reason
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: int = Field(3, ge=2)

    @field_validator("kind")
    @classmethod
    def _no_pausing(cls, v: str) -> str:
        if v == "hyperband":
            raise ValueError("hyperband pauses trials and resumes them from checkpoints, which these trials do "
                             "not write (a paused trial would restart at epoch 0): use asha, its asynchronous form")
        return v


class Search(_Strict):
    """How configurations are chosen: random sampling or Optuna's TPE; ``points`` run first (known good ones)."""

    kind: Literal["random", "tpe"] = "random"
    seed: int = 0
    points: list[dict[str, Any]] = Field(default_factory=list)


def _short(value: Any) -> Any:
    """``scheduler: asha`` is ``scheduler: {kind: asha}`` (the same for ``search``)."""
    return {"kind": value} if isinstance(value, str) else value


class SweepSpec(_Strict):
    """A whole sweep; ``base`` holds fixed config values of the model, ``options`` its run options."""

    model: Literal["forecaster", "sentiment"]
    name: str | None = Field(None, description="default sweep name (--name wins)")
    metric: str
    mode: Literal["min", "max"]
    params: dict[str, Param]
    base: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    search: Search = Field(default_factory=Search)

    @field_validator("scheduler", "search", mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        return _short(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME.match(v):
            raise ValueError(f"{v!r}: letters, digits, '-' and '_' only, starting with a letter")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Param]) -> dict[str, Param]:
        if not v:
            raise ValueError("name at least one parameter to search")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> SweepSpec:
        errors = [*_condition_errors(self.params), *_point_errors(self)]
        if self.params.keys() & self.base.keys():
            errors.append(("base", f"{sorted(self.params.keys() & self.base.keys())} are searched: "
                                   "drop them from base"))
        if errors:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in errors))
        # unconditional first: Optuna's define-by-run suggests a condition's parameter before it is read
        self.params = dict(sorted(self.params.items(), key=lambda kv: bool(kv[1].when)))
        return self


def _condition_errors(params: dict[str, Param]) -> list[tuple[str, str]]:
    """A condition must name an unconditional `choice` parameter and values it can take."""
    errors = []
    for name, p in params.items():
        for other, want in p.when.items():
            path = f"params.{name}.when.{other}"
            if other not in params:
                errors.append((path, "names no searched parameter"))
            elif params[other].when:
                errors.append((path, "conditions on a conditional parameter are not supported"))
            elif params[other].kind != "choice":
                errors.append((path, "a condition needs a `choice` parameter"))
            else:
                missing = [w for w in (want if isinstance(want, list) else [want]) if w not in params[other].choice]
                if missing:
                    errors.append((path, f"{missing} not among {other}'s choices {params[other].choice}"))
    return errors


def _point_errors(spec: SweepSpec) -> list[tuple[str, str]]:
    errors = []
    if len(spec.search.points) > spec.budget.samples:
        errors.append(("search.points", f"{len(spec.search.points)} points but budget.samples is "
                                        f"{spec.budget.samples}"))
    for i, point in enumerate(spec.search.points):
        if unknown := sorted(set(point) - set(spec.params)):
            errors.append((f"search.points.{i}", f"{unknown} are not searched parameters"))
    return errors


def _message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        path = ".".join(str(x) for x in err["loc"]) or "sweep"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{path}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


def parse_spec(data: dict[str, Any], source: str = "sweep") -> SweepSpec:
    """Validate a sweep (a dict, as from YAML) including the model's own checks; one SweepSpecError if bad."""
    from finpulse.sweeps.models import check_for_model

    if not isinstance(data, dict):
        raise SweepSpecError(f"{source}: a sweep file is a mapping (model:, metric:, params:, ...)")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        raise SweepSpecError(f"{source}: {_message(e)}") from None
    if problems := check_for_model(spec):
        raise SweepSpecError(f"{source}: " + "; ".join(problems))
    return spec


def set_value(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply ``path.to.field=value`` (value read as YAML) to a sweep dict: one way to override a file's field."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise SweepSpecError(f"--set {assignment!r}: write field.path=value, e.g. budget.samples=16")
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SweepSpecError(f"--set {assignment!r}: {key} is not a section")
    node[last] = yaml.safe_load(raw)
    return data


EXAMPLES = Path(__file__).parent / "examples"


def example_path(name_or_path: str | Path) -> Path:
    """A shipped example by name (``forecaster``, ``sentiment``), else the path as given."""
    shipped = EXAMPLES / f"{name_or_path}.yaml"
    return shipped if str(name_or_path).isidentifier() and shipped.is_file() else Path(name_or_path)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """Read a sweep file (YAML; or a shipped example by name), apply ``--set`` overrides, validate it."""
    p = example_path(path)
    if not p.is_file():
        raise SweepSpecError(f"{p}: no such sweep file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise SweepSpecError(f"{p}: not valid YAML: {e}") from None
    for assignment in overrides:
        set_value(data, assignment)
    return parse_spec(data, str(p))
