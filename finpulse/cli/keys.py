"""`finpulse keys create|list|revoke`: the API keys file a running app follows without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finpulse.cli._app import app, print_json

keys_app = typer.Typer(help="API keys of the HTTP API (stored hashed; a running app picks changes up).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
KeysFile = Annotated[Path | None, typer.Option("--file", help="The keys file (default: $FINPULSE_API_KEYS_FILE, else "
                                                              "<home>/secrets/api_keys.json).")]


def _path(file: Path | None) -> Path:
    from finpulse.serving.api_keys import keys_file

    return file.absolute() if file else keys_file()


def _fail(command: str, exc: Exception) -> None:
    typer.echo(f"finpulse keys {command}: {exc}", err=True)
    raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who holds the key (letters, digits, _.@-).")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated: read (model routes, /v1/models), "
                                                        "write (POST /v1/posts).")] = "read",
    rate_per_s: Annotated[float | None, typer.Option(help="This key's own rate (default: the Gateway's "
                                                          "rate_limit).")] = None,
    burst: Annotated[int | None, typer.Option(help="This key's own burst (with --rate-per-s).")] = None,
    file: KeysFile = None,
) -> None:
    """Create a key and print it ONCE (only its SHA-256 is stored): keep it, it cannot be shown again."""
    from pydantic import ValidationError

    from finpulse.serving.access import KeysError, field_errors
    from finpulse.serving.api_keys import create_key
    from finpulse.serving.schemas import RateLimit

    path = _path(file)
    try:
        if (rate_per_s is None) != (burst is None):
            raise KeysError("give both --rate-per-s and --burst, or neither")
        limit = RateLimit(rate_per_s=rate_per_s, burst=burst) if rate_per_s is not None else None
        key = create_key(path, name, [s.strip() for s in scopes.split(",") if s.strip()], limit)  # type: ignore[misc]
    except ValidationError as exc:  # a rate or burst out of range
        _fail("create", ValueError(field_errors(exc)))
    except KeysError as exc:
        _fail("create", exc)
    typer.echo(key)
    typer.echo(f"key {name!r} ({scopes}) added to {path}; this is the only time it is shown", err=True)


@keys_app.command("list")
def keys_list(file: KeysFile = None) -> None:
    """Names, scopes and rate limits of the keys (never the keys or their hashes)."""
    from finpulse.serving.access import KeysError, read_keys_file

    try:
        entries = read_keys_file(_path(file))
    except KeysError as exc:
        _fail("list", exc)
    print_json([e.model_dump(exclude={"sha256"}, exclude_none=True) for e in entries])


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")], file: KeysFile = None) -> None:
    """Remove a key: a running app refuses it within seconds (the Gateway re-reads the file)."""
    from finpulse.serving.access import KeysError
    from finpulse.serving.api_keys import revoke_key

    path = _path(file)
    try:
        revoke_key(path, name)
    except KeysError as exc:
        _fail("revoke", exc)
    typer.echo(f"revoked {name!r} in {path}", err=True)
