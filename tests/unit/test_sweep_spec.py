"""Sweep files (finpulse.sweeps): every distribution and condition, bad files refused naming the field,
the shipped examples, and the translation into Ray Tune and Optuna (in range, seeded, conditional)."""

from __future__ import annotations

import copy
import math

import numpy as np
import optuna
import pytest
import yaml
from ray.tune.search.variant_generator import generate_variants
from typer.testing import CliRunner

from finpulse.cli import app
from finpulse.sweeps import SweepSpecError, load_spec, parse_spec
from finpulse.sweeps.space import OptunaSpace, active, random_space, search_algorithm, trial_scheduler
from finpulse.sweeps.spec import EXAMPLES

SPEC = {"model": "forecaster", "metric": "val_loss", "mode": "min",
        "params": {"dropout": {"uniform": [0.0, 0.3], "when": {"num_layers": 2}},  # before its condition: reordered
                   "num_layers": {"choice": [1, 2]},
                   "lr": {"loguniform": [1e-4, 1e-2]},
                   "lookback": {"randint": [5, 10]},
                   "weight_decay": {"quniform": [0.0, 0.1, 0.01]},
                   "feature_set": {"choice": ["price", "price_sentiment"]}},
        "base": {"hidden_size": 8, "tickers": ["AAPL"]},
        "budget": {"samples": 4}}


def spec_with(**changes) -> dict:
    out = copy.deepcopy(SPEC)
    for path, value in changes.items():
        node, *keys = out, *path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


def in_range(config: dict) -> None:
    assert config["num_layers"] in (1, 2) and config["feature_set"] in ("price", "price_sentiment")
    assert 1e-4 <= config["lr"] <= 1e-2 and 5 <= config["lookback"] < 10 and type(config["lookback"]) is int
    assert 0 <= config["weight_decay"] <= 0.1 and math.isclose(round(config["weight_decay"] / 0.01) * 0.01,
                                                                  config["weight_decay"], abs_tol=1e-9)
    if config["num_layers"] == 2:
        assert 0.0 <= config["dropout"] <= 0.3
    else:
        assert config.get("dropout") is None  # inactive: the trial keeps the base value


def random_draws(seed: int, n: int = 40) -> list[dict]:
    spec = parse_spec(spec_with(search={"kind": "random", "seed": seed}))
    rng = np.random.default_rng(seed)
    space = random_space(spec)
    return [c["config"] for _ in range(n) for _, c in generate_variants({"config": space}, random_state=rng)]


def tpe_draws(seed: int, n: int = 12) -> list[dict]:
    spec = parse_spec(SPEC)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))
    out = []
    for _ in range(n):
        trial = study.ask()
        OptunaSpace(spec.params)(trial)
        out.append(dict(trial.params))
        study.tell(trial, trial.params["lr"])  # a loss TPE can learn: smaller lr is better
    return out


def test_every_distribution_parses_and_conditionals_come_after_their_condition():
    spec = parse_spec(SPEC)
    assert {p.kind for p in spec.params.values()} == {"choice", "uniform", "loguniform", "randint", "quniform"}
    assert list(spec.params)[-1] == "dropout"  # Optuna's define-by-run suggests num_layers first
    assert spec.scheduler.kind == "asha" and spec.search.kind == "random"  # defaults
    short = parse_spec(spec_with(scheduler="median", search="tpe"))
    assert short.scheduler.kind == "median" and short.search.kind == "tpe"


def test_random_search_is_in_range_seeded_and_conditional():
    a, b = random_draws(3), random_draws(3)
    assert a == b and a != random_draws(4)
    for c in a:
        in_range(c)
    assert {c["num_layers"] for c in a} == {1, 2}
    lrs = np.log10([c["lr"] for c in random_draws(0, 400)])  # log-uniform: the median in the middle decade
    assert abs(float(np.median(lrs)) + 3) < 0.15
    assert all(k not in active(a[0]) for k, v in a[0].items() if v is None)


def test_tpe_is_in_range_seeded_and_conditional():
    a, b = tpe_draws(0), tpe_draws(0)
    assert a == b and a != tpe_draws(1)
    for c in a:
        in_range(c)
    assert any("dropout" not in c for c in a) and any("dropout" in c for c in a)  # only suggested with 2 layers


def test_search_algorithms_schedulers_and_the_concurrency_limit():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    alg, space = search_algorithm(parse_spec(spec_with(search={"kind": "tpe"}, budget={"max_concurrent": 3})))
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 3 and space == {}
    alg, space = search_algorithm(parse_spec(SPEC))
    assert isinstance(alg, BasicVariantGenerator) and set(space) == set(SPEC["params"])
    spec = parse_spec(SPEC)
    kinds = {"asha": ASHAScheduler, "median": MedianStoppingRule, "fifo": FIFOScheduler}
    for kind, cls in kinds.items():
        assert isinstance(trial_scheduler(spec.scheduler.model_copy(update={"kind": kind}), max_t=5), cls)


@pytest.mark.parametrize("changes, message", [
    ({"params__lr": {"loguniform": [0, 1e-2]}}, "params.lr.loguniform: low must be > 0"),
    ({"params__lr": {"uniform": [0.1, 0.01]}}, "params.lr.uniform: low 0.1 must be <= high 0.01"),
    ({"params__lookback": {"randint": [5, 5]}}, "params.lookback.randint: low 5 must be < high 5"),
    ({"params__weight_decay": {"quniform": [0, 1, 0]}}, "params.weight_decay.quniform: q 0.0 must be > 0"),
    ({"params__num_layers": {"choice": []}}, "params.num_layers.choice: needs at least one value"),
    ({"params__lr": {"choice": [1e-3], "uniform": [0, 1]}}, "params.lr: give exactly one of"),
    ({"params__lr": {"normal": [0, 1]}}, "params.lr.normal: Extra inputs are not permitted"),
    ({"params__dropout__when": {"num_layers": 3}}, "params.dropout.when.num_layers: [3] not among"),
    ({"params__dropout__when": {"depth": 2}}, "params.dropout.when.depth: names no searched parameter"),
    ({"params__dropout__when": {"lr": 0.1}}, "params.dropout.when.lr: a condition needs a `choice` parameter"),
    ({"params__hiden_size": {"choice": [8]}}, "params.hiden_size: not a field of ForecastConfig"),
    ({"base__hiden_size": 8}, "base.hiden_size: not a field of ForecastConfig"),
    ({"base__hidden_size": 0}, "base.hidden_size: Input should be greater than or equal to 1"),
    ({"base__lr": 0.1}, "base: ['lr'] are searched"),
    ({"metric": "val_macro_f1"}, "metric: the forecaster reports val_loss"),
    ({"mode": "minimize"}, "mode: Input should be 'min' or 'max'"),
    ({"model": "gpt"}, "model: Input should be 'forecaster' or 'sentiment'"),
    ({"budget__samples": 0}, "budget.samples: Input should be greater than or equal to 1"),
    ({"budget__gpus_per_trial": 1}, "budget.gpus_per_trial: the LSTM trials run on CPUs"),
    ({"scheduler": "bohb"}, "scheduler.kind: Input should be"),
    ({"scheduler": "hyperband"}, "scheduler.kind: hyperband pauses trials"),
    ({"scheduler": {"kind": "asha", "grace": 2}}, "scheduler.grace: Extra inputs are not permitted"),
    ({"search": {"kind": "tpe", "points": [{"depth": 2}]}}, "search.points.0: ['depth'] are not searched"),
    ({"options__tune_end": "soon"}, "options.tune_end: Input should be a valid date"),
    ({"name": "has space"}, "name: 'has space': letters, digits"),
])
def test_a_bad_sweep_is_one_error_naming_the_field(changes, message):
    with pytest.raises(SweepSpecError) as e:
        parse_spec(spec_with(**changes))
    assert message in str(e.value)


def test_sentiment_base_is_checked_against_its_config():
    ok = parse_spec({"model": "sentiment", "metric": "val_macro_f1", "mode": "max",
                     "params": {"epochs": {"choice": [1, 2]}}, "base": {"dataset": {"kind": "tfns"}}})
    assert ok.params["epochs"].highest() == 2
    with pytest.raises(SweepSpecError, match=r"base\.learning_rat: not a field of SentimentTrainConfig"):
        parse_spec({**ok.model_dump(), "base": {"learning_rat": 1e-3}})
    with pytest.raises(SweepSpecError, match=r"base: .*train_precision"):
        parse_spec({**ok.model_dump(), "base": {"train_precision": "fp8"}})


def test_shipped_examples_load_and_overrides_name_fields(tmp_path):
    for path in EXAMPLES.glob("*.yaml"):
        spec = load_spec(path.stem)
        assert spec.model == path.stem
    spec = load_spec("forecaster", ["budget.samples=16", "search.kind=random", "options.embedded=true"])
    assert spec.budget.samples == 16 and spec.search.kind == "random" and spec.options["embedded"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SPEC, "params": {"lr": {"loguniform": [-1, 1]}}}))
    with pytest.raises(SweepSpecError, match=f"{bad}: params.lr.loguniform: low must be > 0"):
        load_spec(bad)
    with pytest.raises(SweepSpecError, match=r"write field\.path=value"):
        load_spec("forecaster", ["budget.samples"])


@pytest.mark.parametrize("args, message", [
    (["--space", "/no/such.yaml"], "no such sweep file"),
    (["--set", "params.lr.loguniform=[0, 1]"], "params.lr.loguniform: low must be > 0"),
    (["--space", "sentiment", "--set", "base.epoch=2"], "base.epoch: not a field of SentimentTrainConfig"),
])
def test_cli_refuses_a_bad_sweep_before_starting_ray(args, message, monkeypatch):
    import finpulse.runtime

    started = []  # a Ray the suite already runs must not hide a start: record the call itself
    monkeypatch.setattr(finpulse.runtime, "connect", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(app, ["tune", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())  # rich wraps the message in a box
    assert started == []


def test_report_and_resume_of_an_unknown_sweep_say_so(tmp_path, monkeypatch):
    from finpulse.config import get_settings

    monkeypatch.setenv("FINPULSE_HOME", str(tmp_path))
    monkeypatch.delenv("FINPULSE_RAY_STORAGE_PATH", raising=False)
    get_settings.cache_clear()
    try:
        for args in (["tune-report", "nope"], ["tune", "--resume", "nope"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2 and "no sweep named 'nope'" in result.output.replace("│", " "), result.output
    finally:
        get_settings.cache_clear()
