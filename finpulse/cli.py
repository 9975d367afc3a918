"""`finpulse ...`: a thin typer CLI over the library; each command parses options and calls one function."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="FinPulse: social-media sentiment in next-day price forecasts, on Ray.", no_args_is_help=True)


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# ---- data (foundation) ----------------------------------------------------------------------------

# ---- sentiment -----------------------------------------------------------------------------------

# ---- forecast ------------------------------------------------------------------------------------

# ---- serving -------------------------------------------------------------------------------------


if __name__ == "__main__":
    app()
