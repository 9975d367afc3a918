"""`finpulse backup pg-dump|pg-restore|fetch|mirror|list`: backups of the registry database and the object
store to the backup target (``FINPULSE_BACKUP_*``), and their restore; cluster/BACKUP.md has the order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finpulse.cli._app import app, print_json

backup_app = typer.Typer(help="Backups: pg_dump of the MLflow database, a mirror of the S3 buckets; restores.",
                         no_args_is_help=True)
app.add_typer(backup_app, name="backup")
Database = Annotated[str, typer.Option("--database", help="The database (server from PGHOST/PGPORT/PGUSER/"
                                                          "PGPASSWORD).")]
Key = Annotated[str, typer.Option("--key", help="'latest', a dump's file name or full key (see `backup list`).")]


def _fail(command: str, exc: Exception) -> None:
    typer.echo(f"finpulse backup {command}: {exc}", err=True)
    raise typer.Exit(1) from None


def _errors() -> tuple[type[Exception], ...]:
    """What a backup command reports as one line: its own errors and the S3 server's refusals (a missing
    bucket, wrong keys); an endpoint that does not answer is the CLI's ServiceUnreachable (exit 3)."""
    from botocore.exceptions import ClientError

    from finpulse.ops.backup import BackupError

    return BackupError, ClientError


@backup_app.command("pg-dump")
def pg_dump_cmd(
    database: Database = "mlflow",
    dump_file: Annotated[Path | None, typer.Option("--from-file", help="Upload this custom-format dump instead "
                                                   "of running pg_dump (the CronJob's pg_dump runs in the "
                                                   "server's image).")] = None,
    pg_dump: Annotated[str, typer.Option(help="The pg_dump to run (as new as the server).")] = "pg_dump",
    keep: Annotated[int | None, typer.Option(help="Dumps kept (default FINPULSE_BACKUP_KEEP).")] = None,
) -> None:
    """Dump the database to the backup target and delete all but the newest N dumps."""
    from finpulse.ops.backup import backup_database
    from finpulse.ops.stores import BackupSettings, backup_store

    settings = BackupSettings()
    try:
        result = backup_database(backup_store(settings), settings, database, dump_file=dump_file, pg_dump=pg_dump,
                                 keep=keep)
    except _errors() as exc:
        _fail("pg-dump", exc)
    print_json({"key": result.key, "bytes": result.size, "deleted": result.deleted})


@backup_app.command("pg-restore")
def pg_restore_cmd(
    database: Database = "mlflow",
    key: Key = "latest",
    pg_restore: Annotated[str, typer.Option(help="The pg_restore to run (as new as the dump's pg_dump).")] = "pg_restore",
) -> None:
    """Restore a dump into the database: what the dump holds is dropped and recreated, in one transaction."""
    from finpulse.ops.backup import restore_database
    from finpulse.ops.stores import BackupSettings, backup_store

    settings = BackupSettings()
    try:
        restored = restore_database(backup_store(settings), settings, database, key, pg_restore)
    except _errors() as exc:
        _fail("pg-restore", exc)
    typer.echo(f"restored {restored} into {database}", err=True)


@backup_app.command("fetch")
def fetch_cmd(
    to: Annotated[Path, typer.Option("--to", help="Where to write the dump.")],
    database: Database = "mlflow",
    key: Key = "latest",
) -> None:
    """Download a dump (to restore it with the server's own pg_restore, e.g. inside the PostgreSQL pod)."""
    from finpulse.ops.backup import fetch_dump
    from finpulse.ops.stores import BackupSettings, backup_store

    settings = BackupSettings()
    try:
        typer.echo(fetch_dump(backup_store(settings), settings, database, to, key))
    except _errors() as exc:
        _fail("fetch", exc)


@backup_app.command("mirror")
def mirror_cmd(
    bucket: Annotated[list[str] | None, typer.Option("--bucket", help="A live bucket (repeat; default "
                                                     "FINPULSE_BACKUP_BUCKETS).")] = None,
    restore: Annotated[bool, typer.Option(help="Copy the mirror back into the live buckets.")] = False,
    delete: Annotated[bool, typer.Option(help="Also delete, at the destination, objects the source lacks.")] = False,
) -> None:
    """Copy new and changed objects of the live buckets to the backup target (or back, with --restore)."""
    from finpulse.ops.mirror import mirror_buckets
    from finpulse.ops.stores import BackupSettings, backup_store, live_store

    settings = BackupSettings()
    try:
        results = mirror_buckets(live_store(backup=settings), backup_store(settings), settings,
                                 bucket or settings.bucket_list(), restore=restore, delete=delete)
    except _errors() as exc:
        _fail("mirror", exc)
    print_json({b: {"copied": len(r.copied), "skipped": r.skipped, "deleted": len(r.deleted),
                    "bytes_copied": r.bytes_copied} for b, r in results.items()})


@backup_app.command("list")
def list_cmd(database: Database = "mlflow") -> None:
    """The database's dumps at the backup target, oldest first."""
    from finpulse.ops.backup import list_dumps
    from finpulse.ops.stores import BackupSettings, backup_store

    settings = BackupSettings()
    try:
        print_json(list_dumps(backup_store(settings), settings, database))
    except _errors() as exc:
        _fail("list", exc)
