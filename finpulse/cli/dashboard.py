"""``finpulse dashboard``: the Streamlit dashboard over the curated data, models and live health."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from finpulse.cli._app import app


@app.command("dashboard")
def dashboard_cmd(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 to serve other machines).")] = "127.0.0.1",
    log_file: Annotated[str | None, typer.Option(help="Streamlit's log; default <home>/logs/dashboard.log.")] = None,
) -> None:
    """Serve the dashboard until Ctrl-C: posts and prices, signal, models, live health, data quality."""
    import signal

    from finpulse.dashboard import launch

    def terminated(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (a service manager, `kill`) stops the server like Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    proc, url = launch.start(port, host, log_file=log_file)
    typer.echo(f"dashboard: {url}  (Ctrl-C stops it)")
    try:
        while proc.poll() is None:
            time.sleep(0.5)
        typer.echo(f"dashboard exited with code {proc.returncode}", err=True)
        raise typer.Exit(proc.returncode or 1)
    except KeyboardInterrupt:
        typer.echo("stopping the dashboard")
    finally:
        launch.stop(proc)
