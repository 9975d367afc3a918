"""Monitoring commands: ``finpulse drift`` compares the recent window with the models' references."""

from __future__ import annotations

from typing import Annotated

import typer

from finpulse.cli._app import app
from finpulse.names import FORECAST_MODEL, SENTIMENT_MODEL, model_spec

ALARM_EXIT_CODE = 3


@app.command("drift")
def drift_cmd(
    window_days: Annotated[int, typer.Option(help="Trading days in the current window.")] = 20,
    model: Annotated[str, typer.Option(help="Forecaster spec ('' to skip).")] = model_spec(FORECAST_MODEL),
    sentiment_model: Annotated[str, typer.Option(help="Sentiment model spec ('' to skip).")] = model_spec(SENTIMENT_MODEL),
    alpha: Annotated[float, typer.Option(help="Report-level false-alarm rate (Holm over all tests).")] = 0.05,
    permutations: Annotated[int, typer.Option(help="Permutations for the embedding MMD p-value.")] = 1000,
    embedding_sample: Annotated[int, typer.Option(help="Posts embedded per side.")] = 500,
    seed: Annotated[int, typer.Option()] = 0,
    fail_on_alarm: Annotated[bool, typer.Option(help=f"Exit with code {ALARM_EXIT_CODE} when the alarm is raised.")] = False,
) -> None:
    """Drift of features, sentiment, embeddings and predictions: JSON + HTML report, latest.json, MLflow."""
    from finpulse.monitoring.drift import DriftConfig
    from finpulse.monitoring.job import run_drift
    from finpulse.paths import data_paths

    config = DriftConfig(alpha=alpha, permutations=permutations, embedding_sample=embedding_sample, seed=seed)
    rep = run_drift(data_paths(), model_specs={"forecaster": model or None, "sentiment": sentiment_model or None},
                    window_days=window_days, config=config)
    typer.echo(f"{'signal':<12} {'feature':<16} {'test':<6} {'score':>10} {'p':>9} {'alarm':>6}")
    for e in rep.entries:
        p = "" if e.p_value is None else f"{e.p_value:.3g}"
        typer.echo(f"{e.signal:<12} {e.feature[:16]:<16} {e.test:<6} {e.score:>10.4g} {p:>9} {e.alarm!s:>6}")
    for line in rep.meta.get("skipped", []):
        typer.echo(f"skipped: {line}")
    typer.echo(f"alarm: {rep.alarm}" + "".join(f"\n  - {r}" for r in rep.reasons))
    typer.echo(f"report: {rep.meta.get('json')}")
    if fail_on_alarm and rep.alarm:
        raise typer.Exit(ALARM_EXIT_CODE)
