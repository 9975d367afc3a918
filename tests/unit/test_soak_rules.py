"""The champion age limit is written twice, in the alert rules and in the settings: they must agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from finpulse.config import Settings

RULES = Path(__file__).resolve().parents[2] / "cluster" / "base" / "monitoring" / "rules" / "finpulse-alerts.yml"


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r.get("record") or r["alert"]: r for g in groups for r in g["rules"]}


def test_max_model_age_rule_matches_the_settings_default():
    expr = _rules()["finpulse:max_model_age_seconds"]["expr"]
    m = re.fullmatch(r"vector\((\d+(?:\.\d+)?) \* 86400\)", expr.strip())
    assert m, expr
    assert float(m[1]) == Settings().max_model_age_days


def test_freshness_drift_and_canary_alerts_exist():
    rules = _rules()
    assert "finpulse:max_model_age_seconds" in rules["FinPulseChampionStale"]["expr"]
    assert "ray_finpulse_drift_alarm" in rules["FinPulseDriftAlarm"]["expr"]
    assert 'slot="canary"' in rules["FinPulseCanaryErrors"]["expr"]
