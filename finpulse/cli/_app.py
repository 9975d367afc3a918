"""The typer app every command module registers on, and the helpers they share."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="FinPulse: social-media sentiment in next-day price forecasts, on Ray.", no_args_is_help=True)


def print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
