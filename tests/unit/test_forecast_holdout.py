"""Promotion evidence is out of sample, and a too-good directional accuracy blocks promotion on real data.

In process, no Ray, no MLflow: the tuning choice, the retrain, the walk-forward of the saved weights and
the gate are the same functions the Ray paths call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from finpulse.forecast import holdout
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import promotion_evidence
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.loop import fit_in_process, prepare_training_data
from finpulse.forecast.model import load_forecaster
from finpulse.forecast.promote import PromotionPolicy, decide
from finpulse.forecast.train import TrainOptions, train_forecaster
from finpulse.forecast.tune import tuning_base
from finpulse.forecast.walk_forward import WalkForwardConfig, walk_forward

TICKERS = ["AAPL", "MSFT", "AMZN"]
SMALL = {"hidden_size": 16, "lookback": 10, "batch_size": 64, "patience": 4, "max_epochs": 10}
TUNE_END = dt.date(2018, 7, 1)


def _signal_that_reverses(after: dt.date) -> pd.DataFrame:
    """Posts that predict tomorrow until ``after``, and predict the opposite from then on."""
    df = synthetic_features(TICKERS, start="2016-01-01", end="2019-07-01", signal_strength=1.0)
    late = pd.to_datetime(df["date"]).dt.date >= after
    df.loc[late, "sent_mean"] = -df.loc[late, "sent_mean"]
    df.loc[late, ["sent_pos_share", "sent_neg_share"]] = df.loc[late, ["sent_neg_share", "sent_pos_share"]].to_numpy()
    return df


def _val_mae(model, data) -> tuple[float, float]:
    """MAE of the model and of persistence on the validation windows (inside the tuning window)."""
    import numpy as np

    from finpulse.forecast.model import predict_arrays

    v = data.val
    point, _ = predict_arrays(model, v.x, v.ticker_idx, data.scaler.target_scale)
    return float(np.mean(np.abs(v.close * np.exp(point) - v.target_close))), float(np.mean(np.abs(v.close - v.target_close)))


def test_tuned_config_that_wins_only_inside_its_tuning_window_is_refused(tmp_path):
    df = _signal_that_reverses(TUNE_END)
    base = tuning_base(df, ForecastConfig(**SMALL), tune_end=TUNE_END)
    assert base.val_end == TUNE_END
    # the search (what each Tune trial does): every candidate fits and validates before tune_end
    fits = {fs: fit_in_process(prepare_training_data(df, c), c)
            for fs, c in ((fs, base.model_copy(update={"feature_set": fs})) for fs in ("price", "price_sentiment"))}
    best = min(fits, key=lambda fs: fits[fs].best_val_loss)
    assert best == "price_sentiment"
    cfg = base.model_copy(update={"feature_set": best})
    res = train_forecaster(df, cfg, TrainOptions(use_ray=False, log_mlflow=False, out_dir=tmp_path, tuned_before=TUNE_END))
    weights = load_forecaster(str(res.model_dir))
    assert weights.meta["extra"]["tuned_before"] == str(TUNE_END) == weights.meta["extra"]["seen_before"]
    inside, persist_inside = _val_mae(weights.model, prepare_training_data(df, cfg))
    assert inside < 0.95 * persist_inside  # inside its own tuning window it looks like a clear winner

    wf = WalkForwardConfig(k=1, test_start=TUNE_END, baselines=("persistence",))
    result = walk_forward(df, cfg, wf, weights=weights)
    evidence = promotion_evidence(result, "lstm_price_sentiment")
    assert evidence["wf_out_of_sample"] == 1.0
    assert evidence["wf_mae"] == pytest.approx(result.metric(holdout.REGISTERED, "mae"))
    decision = decide(evidence, None, PromotionPolicy())
    assert not decision.promote and any("worse than persistence" in r for r in decision.reasons)

    # an evaluation window that starts inside the tuning window is refused, not scored
    with pytest.raises(holdout.NotOutOfSample, match="trained or validated"):
        walk_forward(df, cfg, WalkForwardConfig(k=1, test_start=dt.date(2018, 1, 2), baselines=("persistence",)),
                     weights=weights)
    with pytest.raises(holdout.NotOutOfSample):
        tuning_base(df, ForecastConfig(**SMALL), tune_end=TUNE_END, test_start=dt.date(2018, 1, 2))


def test_tuning_window_alone_also_blocks_an_earlier_test_window():
    meta = {"extra": {"seen_before": "2018-01-01", "tuned_before": "2018-07-01"}}
    holdout.check_out_of_sample(meta, dt.date(2018, 7, 1))
    with pytest.raises(holdout.NotOutOfSample, match="tuned"):
        holdout.check_out_of_sample(meta, dt.date(2018, 3, 1))
    with pytest.raises(holdout.NotOutOfSample, match="does not say"):
        holdout.check_out_of_sample({"extra": {}}, dt.date(2018, 3, 1))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A strong planted signal: the saved weights' walk-forward directional accuracy is far above 60%."""
    df = synthetic_features(TICKERS, start="2016-01-01", end="2019-07-01", signal_strength=2.0)
    cfg = ForecastConfig(**SMALL, val_end=dt.date(2019, 1, 1))
    res = train_forecaster(df, cfg, TrainOptions(use_ray=False, log_mlflow=False, out_dir=tmp_path_factory.mktemp("m")))
    wf = WalkForwardConfig(k=1, test_start=dt.date(2019, 1, 1), baselines=("persistence",))
    return df, walk_forward(df, cfg, wf, weights=load_forecaster(str(res.model_dir)))


def test_leakage_alarm_blocks_real_data_and_is_waived_for_synthetic(planted):
    df, result = planted
    assert result.metric(holdout.REGISTERED, "directional_accuracy") > holdout.LEAKAGE_ACCURACY
    assert result.leakage_alarm and result.synthetic and holdout.data_is_synthetic(df)
    synthetic = decide(promotion_evidence(result, "lstm_price_sentiment"), None, PromotionPolicy())
    assert synthetic.promote and any("waived" in r for r in synthetic.reasons)
    real = decide(promotion_evidence(dataclasses.replace(result, synthetic=False), "lstm_price_sentiment"), None,
                  PromotionPolicy())
    assert not real.promote and any("leakage alarm" in r for r in real.reasons)
    # the reason names the accuracy that raised the alarm: the highest of the models the alarm watches
    watched = [result.metric(m, "directional_accuracy") for m in (holdout.REGISTERED, "lstm_price_sentiment",
                                                                   "lstm_price") if m in result.table.index]
    assert any(f"{max(watched):.1%} > 60%" in r for r in real.reasons), real.reasons


def test_leakage_alarm_threshold_and_data_label():
    table = pd.DataFrame({"directional_accuracy": [0.61, 0.59]}, index=[holdout.REGISTERED, "lstm_price"])
    assert holdout.leakage_alarm(table, [holdout.REGISTERED])
    assert not holdout.leakage_alarm(table, ["lstm_price", "missing"])
    plain = pd.DataFrame({"date": []})
    assert not holdout.data_is_synthetic(plain)  # unknown counts as real
    assert holdout.data_is_synthetic(plain, synthetic=True)
    good = {"wf_mae": 9.0, "wf_persistence_mae": 10.0, "wf_out_of_sample": 1.0, "wf_directional_accuracy": 0.7}
    assert decide({**good, "wf_leakage_alarm": 0.0}, None, PromotionPolicy()).promote
    assert not decide({**good, "wf_leakage_alarm": 1.0, "wf_data_synthetic": 0.0}, None, PromotionPolicy()).promote
    assert decide({**good, "wf_leakage_alarm": 1.0, "wf_data_synthetic": 1.0}, None, PromotionPolicy()).promote
    stale = decide({"wf_mae": 9.0, "wf_persistence_mae": 10.0}, None, PromotionPolicy())
    assert not stale.promote and "out of sample" in stale.reasons[0]


def test_served_interval_is_the_one_evaluation_measured(planted, tmp_path):
    """predict_next (what the Forecaster deployment calls, via prepare/window_at) gives the registered
    row's calibrated and tracked interval for the same as-of day."""
    df, result = planted
    rows = result.predictions[(result.predictions["model"] == holdout.REGISTERED)
                              & (result.predictions["ticker"] == "MSFT")].sort_values("date")
    row = rows.iloc[len(rows) // 2]
    cfg = ForecastConfig(**SMALL, val_end=dt.date(2019, 1, 1))
    weights = load_forecaster(str(train_forecaster(df, cfg, TrainOptions(use_ray=False, log_mlflow=False, out_dir=tmp_path)).model_dir))
    assert weights.calibration.n > 0 and weights.calibration.step > 0
    hist = df[(df["ticker"] == "MSFT") & (pd.to_datetime(df["date"]).dt.date <= row["date"])]
    out = weights.predict_next(hist)
    assert out["as_of"] == row["date"]
    assert out["low"] == pytest.approx(row["close"] * np.exp(row["low"]), rel=1e-6)
    assert out["high"] == pytest.approx(row["close"] * np.exp(row["high"]), rel=1e-6)
    assert weights.prepare(hist).offsets[-1] != 0.0  # tracking has moved after weeks of outcomes


def test_train_tune_and_evaluate_agree_on_the_default_test_start() -> None:
    """`train-forecaster` without val_end holds out exactly evaluate's default window (off by one day
    once: training counted every day, evaluation only days with a known target)."""
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.holdout import default_test_start
    from finpulse.forecast.inputs import simple_daily_features
    from finpulse.forecast.walk_forward import WalkForwardConfig, evaluation_folds
    from finpulse.resources import load_prices

    features = simple_daily_features(load_prices(["AAPL", "MSFT"]))
    first_test_day = evaluation_folds(features, ForecastConfig(), WalkForwardConfig(k=1))[0][0]
    assert default_test_start(features) == first_test_day
