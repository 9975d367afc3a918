"""Serving commands: run the app, move canary traffic."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import typer

from finpulse.cli._app import app, print_json

# ---- serving -------------------------------------------------------------------------------------

@app.command("serve")
def serve_cmd(
    config: Annotated[str, typer.Option(help="Serve config YAML.")] = "serve_configs/local.yaml",
    port: Annotated[int | None, typer.Option(help="Override http_options.port.")] = None,
    dashboard_port: Annotated[int, typer.Option(help="Ray dashboard port of the local Ray this starts.")] = 8265,
    address: Annotated[str | None, typer.Option(help="Serve on this Ray cluster instead (default: "
                                                     "$FINPULSE_RAY_ADDRESS, else a fresh local Ray).")] = None,
) -> None:
    """Serve the app until Ctrl-C: starts a local Ray, deploys CONFIG with this machine's FinPulse settings
    and API keys (the first serve of a home makes one: see `finpulse keys`), and on Ctrl-C (or SIGTERM)
    stops Serve and Ray."""
    from finpulse.serving.access import KeysError
    from finpulse.serving.run import serve_forever

    try:
        serve_forever(config, port=port, dashboard_port=dashboard_port, address=address)
    except KeysError as exc:
        typer.echo(f"finpulse serve: API keys: {exc}", err=True)
        raise typer.Exit(1) from None


canary_app = typer.Typer(help="Canary traffic for a running app: set, promote, rollback, status.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")
ModelKind = Annotated[Literal["sentiment", "forecast"], typer.Option("--model", "-m", help="Which model's slots.")]
Dashboard = Annotated[str | None, typer.Option("--address", help="Ray dashboard URL; default: the one `finpulse "
                                                                 "serve` recorded in this home, else "
                                                                 "$RAY_DASHBOARD_ADDRESS or :8265.")]


def _client(address: str | None) -> Any:
    from finpulse.serving import canary
    from finpulse.serving.run import read_state

    state = read_state() or {}
    return canary.ServeConfigClient(address or os.environ.get("RAY_DASHBOARD_ADDRESS") or state.get("dashboard")
                                    or canary.DEFAULT_DASHBOARD, token_path=state.get("token_path"))


def _canary(address: str | None, op: str, *args: object, **kwargs: object) -> None:
    """Run canary operation ``op`` and print its summary; failures print one line and exit 1."""
    import requests

    from finpulse.serving import canary

    client = _client(address)
    try:
        out = client.models() if op == "status" else getattr(canary, op)(client, *args, **kwargs)
    except (canary.DashboardError, LookupError, RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: {exc}", err=True)
        raise typer.Exit(1) from None
    except requests.RequestException as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: the app did not answer "
                   f"({type(exc).__name__}): is `finpulse serve` running?", err=True)
        raise typer.Exit(1) from None
    summary = canary.summary(out)
    for extra in ("promotion", "rollback"):
        if extra in out:
            summary[extra] = out[extra]
    print_json(summary)


@canary_app.command("set")
def canary_set(version: Annotated[str, typer.Option("--version", help="Model spec: name@alias, name/N or a folder.")],
               weight: Annotated[float, typer.Option("--weight", min=0.0, max=1.0)],
               model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Load VERSION into the canary slot, then send it WEIGHT of the traffic (no replica restarts)."""
    _canary(address, "set_canary", model, version, weight)


Actor = Annotated[str | None, typer.Option("--actor", help="Who acts, as recorded in MLflow (default: user@host).")]
Reason = Annotated[str, typer.Option("--reason", help="Why, as recorded in MLflow.")]


@canary_app.command("promote")
def canary_promote(model: ModelKind = "forecast", address: Dashboard = None,
                   no_registry: Annotated[bool, typer.Option("--no-registry", help="Promote a canary loaded from "
                                                             "a folder: moves serving only; the registry's champion "
                                                             "stays, so a restart serves it again.")] = False,
                   actor: Actor = None, reason: Reason = "") -> None:
    """Make the canary's version stable AND the registry's champion (recorded in MLflow), and empty the
    canary slot. A restart (which serves @champion) then serves the same version."""
    _canary(address, "promote", model, registry=not no_registry, actor=actor, reason=reason)


@canary_app.command("rollback")
def canary_rollback(model: ModelKind = "forecast", address: Dashboard = None, actor: Actor = None,
                    reason: Reason = "") -> None:
    """Send all traffic back to stable and unload the canary (recorded in MLflow; champion unchanged)."""
    _canary(address, "rollback", model, actor=actor, reason=reason)


@canary_app.command("soak")
def canary_soak(
    model: ModelKind = "forecast", address: Dashboard = None,
    window: Annotated[float, typer.Option("--window", min=1.0, help="Soak window in seconds.")] = 60.0,
    poll: Annotated[float, typer.Option("--poll", min=0.5, help="Seconds between checks.")] = 5.0,
    prometheus: Annotated[str | None, typer.Option(help="Prometheus URL (default: $FINPULSE_PROMETHEUS_URL); "
                                                        "without one, Ray's metrics endpoints are scraped.")] = None,
    ray_metrics: Annotated[list[str] | None, typer.Option("--ray-metrics", help="host:port of a Ray metrics "
                                                          "endpoint (repeat); default: those the dashboard lists.")] = None,
    min_requests: Annotated[int, typer.Option(help="Requests per slot before judging.")] = 50,
    max_error_rate_increase: Annotated[float, typer.Option(help="Canary minus stable 5xx share.")] = 0.02,
    max_p99_ratio: Annotated[float, typer.Option(help="Canary p99 over stable p99.")] = 1.5,
    max_psi: Annotated[float | None, typer.Option(help="Predicted-return PSI limit (omit: 0.25).")] = 0.25,
    on_inconclusive: Annotated[Literal["rollback", "promote"], typer.Option()] = "rollback",
    settle: Annotated[float, typer.Option(help="Seconds before the window starts (metrics in flight).")] = 15.0,
    actor: Actor = None,
) -> None:
    """Watch the running canary against stable for WINDOW seconds: roll it back as soon as its error
    rate, p99 latency or prediction distribution is worse beyond the limits, else promote it."""
    from finpulse.cli.serving_soak import run_soak

    run_soak(_client(address), model, window=window, poll=poll, prometheus=prometheus, ray_metrics=ray_metrics,
             policy={"min_requests": min_requests, "max_error_rate_increase": max_error_rate_increase,
                     "max_p99_ratio": max_p99_ratio, "max_prediction_psi": max_psi, "on_inconclusive": on_inconclusive,
                     "settle_s": settle},
             actor=actor)


@canary_app.command("status")
def canary_status(address: Dashboard = None) -> None:
    """Versions, weights and readiness of the stable and canary slots."""
    _canary(address, "status")
