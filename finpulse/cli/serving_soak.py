"""`finpulse canary soak`: the soak loop with progress lines and a JSON verdict (exit 1 on rollback)."""

from __future__ import annotations

from typing import Any

import typer

from finpulse.cli._app import print_json


def run_soak(client: Any, model: str, *, window: float, poll: float, prometheus: str | None,
             ray_metrics: list[str] | None, policy: dict[str, Any], actor: str | None) -> None:
    from finpulse.config import get_settings
    from finpulse.serving import soak, soak_sources

    try:
        if ray_metrics:
            source: soak.MetricsSource = soak_sources.RayMetricsSource(ray_metrics)
        elif prometheus:
            source = soak_sources.PrometheusSource(prometheus)
        else:
            source = soak_sources.default_source(client, get_settings())
    except Exception as exc:
        typer.echo(f"finpulse canary soak: no metrics source ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(1) from None

    def tick(v: soak.SoakVerdict) -> None:
        typer.echo(f"[{v.elapsed_s:>6.1f}s] {v.action}: {'; '.join(v.reasons)}", err=True)

    try:
        verdict = soak.soak(client, model, source, soak.SoakPolicy(**policy), window_s=window, poll_s=poll,
                            on_tick=tick, promotion={"actor": actor})
    except (LookupError, RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"finpulse canary soak: {exc}", err=True)
        raise typer.Exit(1) from None
    print_json(verdict.to_dict())
    if verdict.applied != "promoted":
        raise typer.Exit(1)
