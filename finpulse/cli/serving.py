"""Serving commands: run the app, move canary traffic."""

from __future__ import annotations

import os
from typing import Annotated, Literal

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
    """Serve the app until Ctrl-C: starts a local Ray, deploys CONFIG with this machine's FinPulse settings,
    and on Ctrl-C (or SIGTERM) stops Serve and Ray."""
    from finpulse.serving.run import serve_forever

    serve_forever(config, port=port, dashboard_port=dashboard_port, address=address)


canary_app = typer.Typer(help="Canary traffic for a running app: set, promote, rollback, status.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")
ModelKind = Annotated[Literal["sentiment", "forecast"], typer.Option("--model", "-m", help="Which model's slots.")]
Dashboard = Annotated[str | None, typer.Option("--address", help="Ray dashboard URL; default: the one `finpulse "
                                                                 "serve` recorded in this home, else "
                                                                 "$RAY_DASHBOARD_ADDRESS or :8265.")]


def _canary(address: str | None, op: str, *args: object) -> None:
    """Run canary operation ``op`` and print its summary; failures print one line and exit 1."""
    import requests

    from finpulse.serving import canary
    from finpulse.serving.run import read_state

    state = read_state() or {}
    client = canary.ServeConfigClient(address or os.environ.get("RAY_DASHBOARD_ADDRESS") or state.get("dashboard")
                                      or canary.DEFAULT_DASHBOARD, token_path=state.get("token_path"))
    try:
        out = client.models() if op == "status" else getattr(canary, op)(client, *args)
    except (canary.DashboardError, LookupError, RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: {exc}", err=True)
        raise typer.Exit(1) from None
    except requests.RequestException as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: the app did not answer "
                   f"({type(exc).__name__}): is `finpulse serve` running?", err=True)
        raise typer.Exit(1) from None
    print_json(canary.summary(out))


@canary_app.command("set")
def canary_set(version: Annotated[str, typer.Option("--version", help="Model spec: name@alias, name/N or a folder.")],
               weight: Annotated[float, typer.Option("--weight", min=0.0, max=1.0)],
               model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Load VERSION into the canary slot, then send it WEIGHT of the traffic (no replica restarts)."""
    _canary(address, "set_canary", model, version, weight)


@canary_app.command("promote")
def canary_promote(model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Make the canary's version stable and empty the canary slot."""
    _canary(address, "promote", model)


@canary_app.command("rollback")
def canary_rollback(model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Send all traffic back to stable and unload the canary."""
    _canary(address, "rollback", model)


@canary_app.command("status")
def canary_status(address: Dashboard = None) -> None:
    """Versions, weights and readiness of the stable and canary slots."""
    _canary(address, "status")
