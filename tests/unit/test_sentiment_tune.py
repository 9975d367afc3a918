"""The sentiment search's pure parts: the seeded space, picking the best row, the CLI refusing bad values before Ray."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finpulse.cli import app
from finpulse.forecast.tune import SearchSpace as ForecastSpace
from finpulse.sentiment.config import SentimentTrainConfig
from finpulse.sentiment.tune import SearchSpace, TuneOptions, best_config

KNOBS = {"learning_rate", "epochs", "max_length", "warmup_ratio", "batch_size"}


def test_space_sampling_is_seeded_reproducible_and_inside_the_space():
    space = SearchSpace()
    a, b = space.sample(64, seed=3), space.sample(64, seed=3)
    assert a == b and len(a) == 64
    assert a != space.sample(64, seed=4)
    for c in a:
        assert set(c) == KNOBS
        assert space.learning_rate[0] <= c["learning_rate"] <= space.learning_rate[1]
        assert space.warmup_ratio[0] <= c["warmup_ratio"] <= space.warmup_ratio[1]
        assert c["epochs"] in space.epochs and c["max_length"] in space.max_length and c["batch_size"] in space.batch_size
        assert all(type(c[k]) is int for k in ("epochs", "max_length", "batch_size"))  # plain values: JSON, MLflow
    json.dumps(a)
    # log-uniform: as many draws in the lower decade of (2e-5, 2e-4) as in the upper one, not 10x fewer
    logs = np.log10([c["learning_rate"] for c in space.sample(2000, seed=0)])
    assert abs(float(np.median(logs)) - math.log10(math.sqrt(2e-5 * 2e-4))) < 0.05
    # every configuration builds a valid training config
    for c in a[:5]:
        assert SentimentTrainConfig(**c).learning_rate == c["learning_rate"]


def test_custom_space_and_single_choices():
    space = SearchSpace(epochs=[2], batch_size=[8], max_length=[48], learning_rate=(1e-4, 1e-4))
    assert {(c["epochs"], c["batch_size"], c["max_length"]) for c in space.sample(10, 0)} == {(2, 8, 48)}
    assert all(c["learning_rate"] == pytest.approx(1e-4) for c in space.sample(10, 0))


@pytest.mark.parametrize("bad", [{"learning_rate": (1e-3, 1e-4)}, {"learning_rate": (0.0, 1e-4)},
                                 {"warmup_ratio": (0.1, 1.0)}, {"epochs": []}, {"epochs": [0, 1]},
                                 {"max_length": [4]}, {"batch_size": [0]}])
def test_space_refuses_impossible_ranges(bad):
    with pytest.raises(ValueError):
        SearchSpace(**bad)


def test_forecast_space_draws_unchanged_by_the_shared_sampler():
    """The forecaster's SearchSpace now samples through finpulse.tuning: the same seed gives the same draws as before."""
    first = ForecastSpace().sample(2, seed=0)
    assert first[0] == {"lookback": 30, "hidden_size": 32, "num_layers": 2, "dropout": pytest.approx(0.012292057180858407),
                        "lr": pytest.approx(0.0003116369105360158), "batch_size": 64, "feature_set": "price"}
    assert type(first[0]["feature_set"]) is str and type(first[0]["lookback"]) is int


def test_best_config_takes_the_first_row_of_the_table():
    table = pd.DataFrame({"learning_rate": [3e-4, 1e-5], "epochs": np.array([2, 3]), "max_length": [32, 64],
                          "best_val_macro_f1": [0.8, 0.5]})
    best = best_config(SentimentTrainConfig(batch_size=8), table, ["learning_rate", "epochs", "max_length"])
    assert (best.learning_rate, best.epochs, best.max_length, best.batch_size) == (3e-4, 2, 32, 8)
    assert type(best.epochs) is int


def test_options_refuse_bad_values():
    for bad in ({"num_samples": 0}, {"cpus_per_trial": 0}, {"scheduler": "hyperband"}, {"max_examples": 1},
                {"grace_period": 0}):
        with pytest.raises(ValueError):
            TuneOptions(**bad)


@pytest.mark.parametrize("args, message", [
    (["--num-samples", "0"], "--num-samples"),
    (["--scheduler", "bogus"], "--scheduler"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--max-examples", "-5"], "--max-examples"),
    (["--space", '{"learning_rate": [0.1, 0.01]}'], "learning_rate range"),
    (["--space", '{"epochs": []}'], "epochs"),
    (["--space", "{not json"], "Invalid value"),
    (["--config", '{"no_such_knob": 1}'], "no_such_knob"),
])
def test_cli_refuses_bad_values_before_starting_ray(args, message):
    result = CliRunner().invoke(app, ["tune-sentiment", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
