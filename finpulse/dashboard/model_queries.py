"""What the Models page shows, read back from MLflow through :mod:`finpulse.tracking` (no Streamlit here).

Every figure comes from what training, evaluation and promotion already logged: registry versions and
aliases, each evaluation run's ``metrics_table.csv`` and ``predictions.csv`` (the walk-forward's
forecasts), its ``walk_forward_config.json`` (the costs), the promotion runs' decisions, and the
sentiment training run's ``sentiment_metrics.json`` and confusion-matrix images. Curves are rebuilt with
the walk-forward's own :func:`~finpulse.forecast.walk_forward.summarize` (the same backtest the table
reports), never recomputed another way.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pandas as pd

from finpulse import tracking
from finpulse.data.schemas import SENTIMENT_LABELS
from finpulse.forecast.holdout import REGISTERED
from finpulse.forecast.report import TABLE_COLUMNS
from finpulse.forecast.walk_forward import PERSISTENCE, summarize

ALIASES = (tracking.CHAMPION, tracking.CHALLENGER)
EVALUATE_KIND = "tags.`finpulse.kind` = 'evaluate'"
PROMOTION_KIND = "tags.`finpulse.kind` = 'promotion'"
BUY_HOLD = "buy and hold"


def _when(seconds: float | None) -> pd.Timestamp | None:
    """Epoch seconds as a naive UTC time (Streamlit's tables warn on time zones and drop them anyway)."""
    return pd.Timestamp(seconds, unit="s") if seconds else None


def registry_versions(names: tuple[str, ...] = (tracking.FORECAST_MODEL, tracking.SENTIMENT_MODEL)) -> pd.DataFrame:
    """One row per registered version: model, version, aliases (comma-separated), created_at (naive UTC), run_id."""
    rows = [{"model": name, "version": v["version"], "aliases": ", ".join(v["aliases"]),
             "created_at": _when(v["created_at"]), "run_id": v["run_id"]}
            for name in names for v in tracking.model_versions(name)]
    return pd.DataFrame(rows, columns=["model", "version", "aliases", "created_at", "run_id"])


def evaluation_run(label: str) -> dict[str, Any] | None:
    """The newest walk-forward evaluation of a registered version (``name/vN``), or None."""
    runs = tracking.find_runs(tracking.FORECAST_EXPERIMENT, f"{EVALUATE_KIND} and tags.model = '{label}'", 1)
    return runs[0] if runs else None


def latest_evaluation() -> dict[str, Any] | None:
    """The newest walk-forward evaluation of anything (a version or a bare configuration), or None."""
    runs = tracking.find_runs(tracking.FORECAST_EXPERIMENT, EVALUATE_KIND, 1)
    return runs[0] if runs else None


def evaluation_table(run_id: str) -> pd.DataFrame:
    """The walk-forward metrics table an evaluation logged (one row per model, indexed by model)."""
    return pd.read_csv(tracking.download_artifacts(run_id, "metrics_table.csv"), index_col="model")


def champion_vs_challenger(name: str = tracking.FORECAST_MODEL) -> pd.DataFrame:
    """The walk-forward rows of the champion's and challenger's saved weights (each from its newest
    evaluation), then the other rows of the challenger's evaluation (the baselines, and ``refit``: its
    configuration refit per fold), with the protocol key (``wf_key``): MAEs compare only under the same
    key. Empty when no version has an alias."""
    rows, baselines = [], None
    for alias in ALIASES:
        ref = tracking.get_version(name, alias)
        if ref is None:
            continue
        run = evaluation_run(ref.label)
        row: dict[str, Any] = {"role": alias, "model": ref.label, "wf_key": None, "evaluated_at": None}
        if run is not None:
            table = evaluation_table(run["run_id"])
            row.update(wf_key=run["tags"].get("wf_key"), evaluated_at=_when(run["start_time"]))
            if REGISTERED in table.index:
                row.update(table.loc[REGISTERED].to_dict())
            if alias == tracking.CHALLENGER or baselines is None:
                baselines = (table.drop(index=[REGISTERED], errors="ignore"), row, wf_config(run["run_id"]))
        rows.append(row)
    if baselines is not None:
        table, row, config = baselines
        named = set(config.get("baselines", ()))
        rows += [{"role": "baseline" if m in named else "refit", "model": m, "wf_key": row["wf_key"],
                  "evaluated_at": row["evaluated_at"], **r.to_dict()} for m, r in table.iterrows()]
    out = pd.DataFrame(rows)
    return out.reindex(columns=["role", "model", "wf_key", "evaluated_at", *(c for c in TABLE_COLUMNS if c in out)])


def last_promotion(experiment: str = tracking.FORECAST_EXPERIMENT) -> dict[str, Any] | None:
    """The newest promotion gate decision: decision, challenger, champion, reasons, at."""
    runs = tracking.find_runs(experiment, PROMOTION_KIND, 1)
    if not runs:
        return None
    tags = runs[0]["tags"]
    return {"decision": tags.get("decision"), "challenger": tags.get("challenger"), "champion": tags.get("champion"),
            "reasons": json.loads(tags.get("reasons", "[]")), "at": _when(runs[0]["start_time"])}


def evaluation_predictions(run_id: str) -> pd.DataFrame | None:
    """Every model's walk-forward forecasts (``predictions.csv``), dates as dates; None when the
    evaluation predates that artifact."""
    try:
        path = tracking.download_artifacts(run_id, "predictions.csv")
    except FileNotFoundError:
        return None
    frame = pd.read_csv(path)
    return frame.assign(date=pd.to_datetime(frame["date"]).dt.date)


def wf_config(run_id: str) -> dict[str, Any]:
    """The walk-forward configuration an evaluation ran with (``walk_forward_config.json``)."""
    return json.loads(tracking.download_artifacts(run_id, "walk_forward_config.json").read_text())


def cost_bps(run_id: str) -> float:
    """The trading cost the evaluation charged."""
    return float(wf_config(run_id).get("cost_bps", 5.0))


def backtest_curves(predictions: pd.DataFrame, cost: float) -> pd.DataFrame:
    """Cumulative growth of 1 after costs per model's long/short strategy and of buy-and-hold, as
    ``date, series, value`` rows: the walk-forward's own backtests (``summarize``), as its table reports."""
    _, _, tests = summarize(predictions, cost)
    parts = [pd.DataFrame({"date": pd.to_datetime(bt["curve"].index), "series": f"{name} long/short",
                           "value": bt["curve"]["strategy"].to_numpy()})
             for name, bt in tests.items() if name != PERSISTENCE]
    if tests:
        curve = next(iter(tests.values()))["curve"]
        parts.append(pd.DataFrame({"date": pd.to_datetime(curve.index), "series": BUY_HOLD,
                                   "value": curve["buy_hold"].to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["date", "series", "value"])


def sentiment_confusion(alias: str = tracking.CHAMPION) -> dict[str, Any] | None:
    """The sentiment version behind ``alias``: its test confusion matrix (rows true, columns predicted,
    from ``sentiment_metrics.json``) and the validation matrix's image; None without that alias."""
    ref = tracking.get_version(tracking.SENTIMENT_MODEL, alias)
    if ref is None or not ref.run_id:
        return None
    out: dict[str, Any] = {"model": ref.label, "test": None, "validation_png": None, "metrics": {}}
    try:
        logged = json.loads(tracking.download_artifacts(ref.run_id, "sentiment_metrics.json").read_text())
        test = logged.get("test") or {}
        out["test"] = confusion_frame(test.get("confusion_matrix"))
        out["metrics"] = {k: v for k, v in test.items() if isinstance(v, int | float) and math.isfinite(v)}
    except FileNotFoundError:
        pass
    with contextlib.suppress(FileNotFoundError):
        out["validation_png"] = tracking.download_artifacts(ref.run_id, "confusion_matrix_validation.png")
    return out


def confusion_frame(matrix: list[list[int]] | None) -> pd.DataFrame | None:
    """A confusion matrix labelled by class: index true, columns predicted."""
    if not matrix:
        return None
    labels = list(SENTIMENT_LABELS)
    return pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))
