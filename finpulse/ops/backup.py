"""Database backups: ``pg_dump`` of a PostgreSQL database (MLflow's registry) to the backup target, the N
newest kept, and the restore with ``pg_restore``.

Dumps use pg_dump's custom format (compressed; ``pg_restore`` can drop and recreate what it holds) under
``<prefix>/postgres/<database>/<database>-<UTC time>.dump``, so names sort by age. The server is named
the way every PostgreSQL client names it, by libpq's environment (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``), so no password passes through arguments. pg_dump must be as new as the server: on the
cluster the CronJob runs it from the server's own image and hands the file over (``dump_file``).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from finpulse.ops.stores import BackupSettings, Store

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# The dump's flags; the CronJob's pg_dump (cluster/base/services/backup.yaml) uses the same (a test checks).
PG_DUMP_FLAGS = ("--format=custom", "--no-owner", "--no-privileges")
PG_RESTORE_FLAGS = ("--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                    "--exit-on-error")


class BackupError(RuntimeError):
    """A backup or restore step failed: what was done and the tool's own last words."""


@dataclass(frozen=True)
class DumpResult:
    key: str
    size: int
    deleted: list[str] = field(default_factory=list)  # old dumps removed by the retention


def dumps_prefix(backup: BackupSettings, database: str) -> str:
    if not _NAME.match(database):
        raise BackupError(f"database name {database!r}: letters, digits and _.- only")
    return f"{backup.prefix.strip('/')}/postgres/{database}/"


def dump_key(backup: BackupSettings, database: str, when: datetime) -> str:
    return f"{dumps_prefix(backup, database)}{database}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.dump"


def _run(argv: list[str], what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=6 * 3600)  # noqa: S603 - pg tools, no shell
    except FileNotFoundError:
        raise BackupError(f"{what}: {argv[0]} not found (Debian/Ubuntu package postgresql-client)") from None
    if proc.returncode != 0:
        last = [line for line in proc.stderr.splitlines() if line.strip()][-3:]
        raise BackupError(f"{what} failed (exit {proc.returncode}): {' | '.join(last)}")


def run_pg_dump(database: str, out: Path, pg_dump: str = "pg_dump") -> Path:
    """``pg_dump --format=custom`` of one database into ``out`` (server from libpq's PG* environment)."""
    _run([pg_dump, *PG_DUMP_FLAGS, f"--file={out}", f"--dbname={database}"], f"pg_dump of {database}")
    return out


def run_pg_restore(database: str, dump: Path, pg_restore: str = "pg_restore") -> None:
    """Restore a custom-format dump into an existing database: every object the dump holds is dropped and
    recreated in one transaction, so a failed restore leaves the database as it was."""
    _run([pg_restore, *PG_RESTORE_FLAGS, f"--dbname={database}", str(dump)], f"pg_restore into {database}")


def list_dumps(store: Store, backup: BackupSettings, database: str) -> list[dict]:
    """The database's dumps at the target, oldest first: key, size, last_modified."""
    prefix = dumps_prefix(backup, database)
    found = []
    with store.reaching(f"listing {backup.bucket}/{prefix}"):
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=backup.bucket, Prefix=prefix):
            found += [{"key": o["Key"], "size": o["Size"], "last_modified": o["LastModified"].isoformat()}
                      for o in page.get("Contents", []) if o["Key"].endswith(".dump")]
    return sorted(found, key=lambda o: o["key"])


def prune_dumps(store: Store, backup: BackupSettings, database: str, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest dumps; returns the deleted keys."""
    if keep < 1:
        raise BackupError("keep must be at least 1: retention never deletes the newest dump")
    old = [d["key"] for d in list_dumps(store, backup, database)][:-keep]
    with store.reaching(f"deleting {len(old)} old dumps"):
        for i in range(0, len(old), 1000):
            store.client.delete_objects(Bucket=backup.bucket,
                                        Delete={"Objects": [{"Key": k} for k in old[i:i + 1000]], "Quiet": True})
    return old


def backup_database(store: Store, backup: BackupSettings, database: str, *, dump_file: Path | None = None,
                    pg_dump: str = "pg_dump", keep: int | None = None, now: datetime | None = None) -> DumpResult:
    """Dump ``database`` (or take the dump another container made, ``dump_file``), upload it, apply retention."""
    key = dump_key(backup, database, now or datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="finpulse-pgdump-") as tmp:
        path = dump_file or run_pg_dump(database, Path(tmp) / "db.dump", pg_dump)
        if not path.is_file() or path.stat().st_size == 0:
            raise BackupError(f"dump file {path} is missing or empty")
        with store.reaching(f"uploading {key}"):
            store.client.upload_file(str(path), backup.bucket, key)
        size = path.stat().st_size
    return DumpResult(key, size, prune_dumps(store, backup, database, keep or backup.keep))


def resolve_dump(store: Store, backup: BackupSettings, database: str, key: str = "latest") -> str:
    """The key of a dump: ``latest`` (the newest), a full key, or a file name in the database's folder."""
    dumps = [d["key"] for d in list_dumps(store, backup, database)]
    if key == "latest":
        if not dumps:
            raise BackupError(f"no dumps of {database} in {backup.bucket}/{dumps_prefix(backup, database)}")
        return dumps[-1]
    full = key if "/" in key else dumps_prefix(backup, database) + key
    if full not in dumps:
        raise BackupError(f"no dump {full} in {backup.bucket} (finpulse backup list shows them)")
    return full


def fetch_dump(store: Store, backup: BackupSettings, database: str, to: Path, key: str = "latest") -> str:
    """Download a dump to ``to`` (for a restore run elsewhere, e.g. inside the PostgreSQL pod)."""
    full = resolve_dump(store, backup, database, key)
    with store.reaching(f"downloading {full}"):
        store.client.download_file(backup.bucket, full, str(to))
    return full


def restore_database(store: Store, backup: BackupSettings, database: str, key: str = "latest",
                     pg_restore: str = "pg_restore") -> str:
    """Download a dump and restore it into ``database``; returns the key restored."""
    with tempfile.TemporaryDirectory(prefix="finpulse-pgrestore-") as tmp:
        path = Path(tmp) / "db.dump"
        full = fetch_dump(store, backup, database, path, key)
        run_pg_restore(database, path, pg_restore)
    return full
