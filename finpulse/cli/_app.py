"""The typer app every command module registers on, and the helpers they share."""

from __future__ import annotations

import json
from typing import Any

import typer

from finpulse.outages import ServiceUnreachable

OUTAGE_EXIT_CODE = 3


class FinPulseApp(typer.Typer):
    """The typer app, with one difference: a server that is gone (:class:`ServiceUnreachable`: the S3
    endpoint, the MLflow tracking server) is one line on stderr naming it and exit code 3, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ServiceUnreachable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(OUTAGE_EXIT_CODE) from None


app = FinPulseApp(help="FinPulse: social-media sentiment in next-day price forecasts, on Ray.", no_args_is_help=True)


def print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
