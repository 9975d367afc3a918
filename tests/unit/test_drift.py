"""Drift statistics, snapshots, the streaming detector and the report formats (no Ray, no MLflow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finpulse.monitoring import reference as ref_io
from finpulse.monitoring import report as report_io
from finpulse.monitoring.drift import DriftConfig, chi2_class_mix, detect, holm, mmd_test, psi, psi_test
from finpulse.monitoring.reference import build_snapshot, histogram_edges
from finpulse.monitoring.streaming import ScoreStream, adwin_entry


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.poisson(2, n).astype(float),
                         "c": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n))})


def _scores(n: int, seed: int, pos: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["negative", "neutral", "positive"], n, p=[0.3, 0.7 - pos, pos])
    return pd.DataFrame({"label": labels, "score": rng.uniform(-1, 1, n)})


def test_psi_null_distribution_scales_with_sample_size() -> None:
    """Under no drift PSI / (1/n + 1/m) follows chi2(bins-1): the threshold must shrink as samples grow,
    and the p-values must be uniform (share below 0.05 close to 0.05)."""
    rng = np.random.default_rng(0)
    p_values, psis = [], {200: [], 5000: []}
    for n in (200, 5000):
        for _ in range(300):
            ref = rng.normal(size=n)
            edges = histogram_edges(ref, 10)
            e = psi_test(ref_io.bin_counts(ref, edges), edges, rng.normal(size=n))
            psis[n].append(e.score)
            p_values.append(e.p_value)
    assert np.mean(psis[5000]) < np.mean(psis[200]) / 10
    assert 0.02 <= np.mean(np.asarray(p_values) < 0.05) <= 0.08
    assert np.mean(psis[200]) == pytest.approx(9 * (2 / 200), rel=0.35)


def test_psi_formula_and_zero_bins() -> None:
    assert psi(np.array([50, 50]), np.array([50, 50])) == pytest.approx(0.0)
    assert np.isfinite(psi(np.array([100, 0]), np.array([0, 100])))
    assert psi(np.array([60, 40]), np.array([40, 60])) > 0


def test_holm_step_down() -> None:
    reject, levels = holm([0.001, 0.02, 0.04, 0.5], 0.05)
    assert levels.tolist() == pytest.approx([0.0125, 0.05 / 3, 0.025, 0.05])
    assert reject.tolist() == [True, False, False, False]  # 0.02 > 0.05/3 stops the step-down
    assert holm([0.01, 0.012], 0.05)[0].tolist() == [True, True]


def test_chi2_class_mix_detects_shift_and_not_noise() -> None:
    base = {"negative": 300, "neutral": 400, "positive": 300}
    assert chi2_class_mix(base, {"negative": 30, "neutral": 40, "positive": 30}).p_value > 0.9
    shifted = chi2_class_mix(base, {"negative": 200, "neutral": 400, "positive": 400})
    assert shifted.p_value < 1e-5 and shifted.detail["dof"] == 2


def test_mmd_permutation_pvalue_is_uniform_under_null_and_small_under_shift() -> None:
    rng = np.random.default_rng(1)
    nulls = [mmd_test(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), permutations=99, seed=s).p_value
             for s in range(60)]
    assert 0.0 < np.mean(np.asarray(nulls) <= 0.05) <= 0.12
    assert np.mean(nulls) == pytest.approx(0.5, abs=0.12)
    shifted = mmd_test(rng.normal(size=(60, 8)), rng.normal(0.7, 1, size=(60, 8)), permutations=99, seed=0)
    assert shifted.p_value == pytest.approx(0.01) and len(shifted.detail["null"]) == 99


def test_detect_names_every_test_and_alarms_on_the_shifted_feature_only() -> None:
    ref = build_snapshot(_frame(800, 1), ["a", "b", "c"], _scores(800, 1), None, np.random.default_rng(1).normal(size=800),
                         sample_size=500, seed=0)
    cur = build_snapshot(_frame(600, 2, shift=0.5), ["a", "b", "c"], _scores(600, 2), None,
                         np.random.default_rng(2).normal(size=600), sample_size=500, seed=0)
    rep = detect(ref, cur, DriftConfig())
    keys = {(e.signal, e.feature, e.test) for e in rep.entries}
    assert {("features", f, t) for f in "abc" for t in ("psi", "ks")} <= keys
    assert {("sentiment", "class_mix", "chi2"), ("sentiment", "score", "ks"), ("predictions", "pred", "psi"),
            ("predictions", "pred", "ks")} <= keys
    assert rep.alarm and {e.feature for e in rep.entries if e.alarm} == {"a"}
    a_psi = rep.entry("features", "a", "psi")
    assert a_psi.score > a_psi.threshold and rep.reasons[0].startswith("features/a")
    assert ref.features["c"].n < 800  # NaNs are not values


def test_snapshot_roundtrip_without_pickle(tmp_path) -> None:
    emb = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    snap = build_snapshot(_frame(300, 0), ["a", "b"], _scores(300, 0), emb, np.arange(300.0), sample_size=100,
                          seed=3, meta={"model": "m/1"})
    assert len(snap.features["a"].sample) == 100 and snap.embeddings.shape == (50, 16)
    folder = ref_io.save(snap, tmp_path / "snap")
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "snapshot.json"]
    back = ref_io.load(folder)
    assert back.features["a"].edges[0] == -np.inf and back.features["a"].counts == snap.features["a"].counts
    np.testing.assert_array_equal(back.embeddings, snap.embeddings)
    np.testing.assert_allclose(back.predictions, snap.predictions)
    assert back.class_counts == snap.class_counts and back.meta["model"] == "m/1"
    assert detect(snap, back).alarm is False


def test_snapshot_merge_fills_missing_parts() -> None:
    f = build_snapshot(_frame(100, 0), ["a"], None, None, np.zeros(10), seed=0, meta={"forecaster": "f/1"})
    s = build_snapshot(None, None, _scores(100, 0), np.ones((5, 3)), None, seed=0, meta={"sentiment_encoder": "s/1"})
    both = f.merge(s)
    assert both.features is not None and both.class_counts is not None and both.embeddings.shape == (5, 3)
    assert both.meta["forecaster"] == "f/1" and both.meta["sentiment_encoder"] == "s/1"


def test_adwin_detects_a_mean_change_and_not_a_stationary_stream() -> None:
    rng = np.random.default_rng(0)
    quiet = ScoreStream(delta=0.002)
    quiet.update(rng.uniform(-1, 1, 20_000))
    assert quiet.detections == [] and quiet.state()["seen"] == 20_000
    moved = adwin_entry(np.concatenate([rng.normal(-0.2, 0.3, 3000), rng.normal(0.3, 0.3, 3000)]))
    assert moved.alarm and moved.detail["positions"][0] >= 3000 and moved.test == "adwin"


def test_adwin_entry_is_advisory_unless_configured() -> None:
    ref = build_snapshot(_frame(300, 0), ["a"], None, None, None, seed=0)
    cur = build_snapshot(_frame(300, 1), ["a"], None, None, None, seed=0)
    rng = np.random.default_rng(0)
    extra = adwin_entry(np.concatenate([rng.normal(-0.5, 0.2, 2000), rng.normal(0.5, 0.2, 2000)]))
    assert detect(ref, cur, DriftConfig(), [extra]).alarm is False
    assert detect(ref, cur, DriftConfig(adwin_in_alarm=True), [extra]).alarm is True


def test_report_json_html_and_latest_format() -> None:
    emb_r = np.random.default_rng(0).normal(size=(40, 4))
    ref = build_snapshot(_frame(300, 0), ["a", "b"], _scores(300, 0), emb_r, np.zeros(50) + 0.01, seed=0)
    cur = build_snapshot(_frame(300, 1, 1.0), ["a", "b"], _scores(300, 1, pos=0.5), emb_r + 1, np.zeros(50), seed=0)
    rep = detect(ref, cur, DriftConfig(permutations=99))
    doc = json.loads(report_io.to_json(rep))
    assert doc["alarm"] is True and {"signal", "feature", "test", "score", "p_value", "threshold", "alarm"} <= set(
        doc["entries"][0])
    page = report_io.to_html(rep, ref, cur)
    assert page.count("data:image/png;base64,") == 4 and "DRIFT ALARM" in page
    latest = report_io.latest(rep, "finpulse-forecaster/v1", "file:///r.json")
    assert set(latest) == {"created_at", "alarm", "reference_model", "report", "gauges"}
    assert latest["alarm"] is True and latest["reference_model"] == "finpulse-forecaster/v1"
    assert {g["signal"] for g in latest["gauges"]} == {"features", "sentiment", "embeddings", "predictions"}
    assert all(set(g) == {"signal", "feature", "test", "score"} for g in latest["gauges"])
    assert pd.Timestamp(latest["created_at"]).tzinfo is not None


def test_ks_threshold_matches_scipy_critical_value() -> None:
    ref = build_snapshot(_frame(1000, 0), ["a"], None, None, None, seed=0)
    cur = build_snapshot(_frame(1000, 1), ["a"], None, None, None, seed=0)
    e = detect(ref, cur, DriftConfig(alpha=0.05)).entry("features", "a", "ks")
    level = e.detail["holm_level"]
    crit = stats.kstwo.ppf(1 - level, 500)  # n = m = 1000: the effective sample size nm/(n+m) is 500
    assert e.threshold == pytest.approx(crit, rel=0.05)
