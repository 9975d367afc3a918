"""Backups against real parts: a PostgreSQL holding a real MLflow registry, dumped to the SeaweedFS S3 and
restored after damage; the object mirror between two buckets, incremental, restoring, deleting only when
asked; retention. No Ray, no mocks."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from typer.testing import CliRunner

from finpulse import cli
from finpulse.ops.backup import BackupError, backup_database, list_dumps, prune_dumps, restore_database
from finpulse.ops.mirror import Location, mirror, mirror_buckets
from finpulse.ops.stores import BackupSettings, Store, make_client
from tests.support.postgres import postgres_server, psql


@pytest.fixture(scope="module")
def pg() -> Iterator[dict[str, str]]:
    with postgres_server() as env:
        yield env


@pytest.fixture()
def pg_env(pg: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's libpq variables in this process's environment, as the CronJob gives them."""
    for k, v in pg.items():
        monkeypatch.setenv(k, v)
    return pg


def store(s3: dict[str, str]) -> Store:
    client = make_client(s3["endpoint"], s3["key"], s3["secret"], "us-east-1", max_attempts=2, connect_timeout_s=2)
    return Store(client, s3["endpoint"], "S3 endpoint")


@pytest.fixture()
def target(s3_server: dict[str, str]) -> tuple[Store, BackupSettings]:
    """A fresh backup bucket on the S3 server, and settings naming it."""
    bucket = f"backup-{uuid.uuid4().hex[:8]}"
    st = store(s3_server)
    st.client.create_bucket(Bucket=bucket)
    settings = BackupSettings(s3_endpoint_url=s3_server["endpoint"], s3_access_key=s3_server["key"],
                              s3_secret_key=s3_server["secret"], bucket=bucket, prefix="site-a", keep=3)
    return st, settings


def mlflow_registry(env: dict[str, str], database: str, artifacts: Path) -> tuple[str, str]:
    """A real MLflow schema with one run and a registered model whose alias points at it."""
    from mlflow import MlflowClient

    psql(env, "postgres", f"CREATE DATABASE {database}")
    uri = f"postgresql+psycopg2://{env['PGUSER']}:{env['PGPASSWORD']}@{env['PGHOST']}:{env['PGPORT']}/{database}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("forecast", artifact_location=str(artifacts))
    run = client.create_run(exp).info.run_id
    client.log_param(run, "hidden", "64")
    client.log_metric(run, "val_mae", 0.42)
    client.create_registered_model("finpulse-forecaster")
    version = client.create_model_version("finpulse-forecaster", f"{artifacts}/model", run)
    client.set_registered_model_alias("finpulse-forecaster", "champion", version.version)
    return uri, run


def test_pg_dump_restores_the_mlflow_registry_after_damage(pg_env, target, tmp_path):
    from mlflow import MlflowClient

    st, settings = target
    uri, run = mlflow_registry(pg_env, "mlflow_a", tmp_path / "art")
    done = backup_database(st, settings, "mlflow_a")
    assert done.key.startswith("site-a/postgres/mlflow_a/mlflow_a-") and done.size > 0 and done.deleted == []
    # damage: the alias moved away, the run deleted for good, a table emptied, another dropped
    psql(pg_env, "mlflow_a", "DELETE FROM registered_model_aliases; DELETE FROM metrics; DELETE FROM latest_metrics;"
                             "DELETE FROM params; DELETE FROM tags; DELETE FROM runs; DROP TABLE model_versions CASCADE")
    assert psql(pg_env, "mlflow_a", "SELECT count(*) FROM runs") == "0"

    assert restore_database(st, settings, "mlflow_a") == done.key
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    restored = client.get_run(run)
    assert restored.data.params == {"hidden": "64"} and restored.data.metrics == {"val_mae": 0.42}
    champion = client.get_model_version_by_alias("finpulse-forecaster", "champion")
    assert champion.run_id == run and str(champion.version) == "1"


def test_retention_keeps_the_newest_dumps_and_latest_is_the_newest(pg_env, target, tmp_path):
    st, settings = target
    psql(pg_env, "postgres", "CREATE DATABASE keepme")
    psql(pg_env, "keepme", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(5):
        psql(pg_env, "keepme", f"UPDATE t SET v = {day:d}")  # noqa: S608 - an int
        done = backup_database(st, settings, "keepme", now=t0 + timedelta(days=day))
    keys = [d["key"] for d in list_dumps(st, settings, "keepme")]
    assert keys == [f"site-a/postgres/keepme/keepme-2026010{d}T000000Z.dump" for d in (3, 4, 5)]
    assert done.deleted == ["site-a/postgres/keepme/keepme-20260102T000000Z.dump"]  # the one the 5th pushed out
    psql(pg_env, "keepme", "UPDATE t SET v = 99")
    restore_database(st, settings, "keepme")  # latest: day 4
    assert psql(pg_env, "keepme", "SELECT v FROM t") == "4"
    restore_database(st, settings, "keepme", key="keepme-20260103T000000Z.dump")
    assert psql(pg_env, "keepme", "SELECT v FROM t") == "2"
    with pytest.raises(BackupError, match="no dump"):
        restore_database(st, settings, "keepme", key="keepme-20260101T000000Z.dump")  # pruned
    with pytest.raises(BackupError, match="at least 1"):
        prune_dumps(st, settings, "keepme", keep=0)
    assert len(list_dumps(st, settings, "keepme")) == 3


def test_cli_dumps_from_a_file_lists_and_fails_clearly(pg_env, target, tmp_path, monkeypatch):
    """The CronJob's path: the dump made by another container's pg_dump, uploaded by `finpulse backup`."""
    _, settings = target
    for k, v in settings.model_dump().items():
        if v is not None:
            monkeypatch.setenv(f"FINPULSE_BACKUP_{k.upper()}", str(v))
    psql(pg_env, "postgres", "CREATE DATABASE clidb")
    psql(pg_env, "clidb", "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
    from finpulse.ops.backup import run_pg_dump

    dump = run_pg_dump("clidb", tmp_path / "made-elsewhere.dump")
    runner = CliRunner()
    r = runner.invoke(cli.app, ["backup", "pg-dump", "--database", "clidb", "--from-file", str(dump)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.app, ["backup", "list", "--database", "clidb"])
    assert r.exit_code == 0 and '"size": ' + str(dump.stat().st_size) in r.output, r.output
    psql(pg_env, "clidb", "DROP TABLE t")
    r = runner.invoke(cli.app, ["backup", "pg-restore", "--database", "clidb"])
    assert r.exit_code == 0, r.output
    assert psql(pg_env, "clidb", "SELECT v FROM t") == "kept"
    r = runner.invoke(cli.app, ["backup", "pg-dump", "--database", "no_such_db"])
    assert r.exit_code == 1 and "pg_dump of no_such_db failed" in r.output and 'database "no_such_db"' in r.output
    r = runner.invoke(cli.app, ["backup", "mirror", "--bucket", "no-such-bucket"])  # the live S3 is s3_server
    assert r.exit_code == 1 and "finpulse backup mirror:" in r.output and "NoSuchBucket" in r.output, r.output


def _put(st: Store, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        st.client.put_object(Bucket=bucket, Key=key, Body=body)


def _read_all(st: Store, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [o["Key"] for o in st.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {k[len(prefix):]: st.client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_object_mirror_is_incremental_restores_and_deletes_only_when_asked(s3_server, target):
    st, settings = target
    live = f"live-{uuid.uuid4().hex[:8]}"
    st.client.create_bucket(Bucket=live)
    objects = {"raw/prices/AAPL.csv": b"date,close\n2026-01-02,1\n", "curated/v=1/manifest.json": b'{"v": 1}',
               "curated/v=1/daily_features/ticker=AAPL/part-0.parquet": os.urandom(2048), "LATEST": b"1",
               "big/model.bin": os.urandom(6 * 1024 * 1024)}  # uploaded in two parts below: a multipart ETag
    _put(st, live, {k: v for k, v in objects.items() if k != "big/model.bin"})
    multipart = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    st.client.upload_fileobj(io.BytesIO(objects["big/model.bin"]), live, "big/model.bin",
                             Config=multipart)
    single = TransferConfig(multipart_threshold=64 * 1024 * 1024)  # the copy single-part: its ETag differs
    first = mirror_buckets(st, st, settings, [live], transfer=single)[live]
    assert sorted(first.copied) == sorted(objects) and first.skipped == 0
    mirrored = f"site-a/objects/{live}/"
    assert _read_all(st, settings.bucket, mirrored) == objects
    etags = [st.client.head_object(Bucket=b, Key=k)["ETag"] for b, k in ((live, "big/model.bin"),
                                                                        (settings.bucket, mirrored + "big/model.bin"))]
    assert etags[0].endswith('-2"') and etags[0] != etags[1]  # so the next pass must match by the recorded ETag

    st.client.put_object(Bucket=live, Key="LATEST", Body=b"2")  # one changed object
    again = mirror_buckets(st, st, settings, [live], transfer=single)[live]
    assert again.copied == ["LATEST"] and again.skipped == len(objects) - 1 and again.bytes_copied == 1

    st.client.delete_object(Bucket=live, Key="raw/prices/AAPL.csv")  # an accidental delete is not mirrored
    kept = mirror_buckets(st, st, settings, [live])[live]
    assert kept.copied == [] and kept.deleted == [] and "raw/prices/AAPL.csv" in _read_all(st, settings.bucket, mirrored)

    for key in list(_read_all(st, live)):  # the live bucket lost: restore it from the mirror
        st.client.delete_object(Bucket=live, Key=key)
    back = mirror_buckets(st, st, settings, [live], restore=True)[live]
    assert len(back.copied) == len(objects) and _read_all(st, live) == {**objects, "LATEST": b"2"}
    assert mirror_buckets(st, st, settings, [live])[live].copied == []  # restored copies count as current

    st.client.delete_object(Bucket=live, Key="LATEST")
    pruned = mirror(Location(st, live), Location(st, settings.bucket, mirrored), delete=True)
    assert pruned.deleted == ["LATEST"] and "LATEST" not in _read_all(st, settings.bucket, mirrored)


def test_unreachable_backup_target_is_one_clear_error():
    from finpulse.outages import ServiceUnreachable
    from tests.support.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    settings = BackupSettings(s3_endpoint_url=dead, s3_access_key="k", s3_secret_key="s", max_attempts=1,
                              connect_timeout_s=0.5)
    st = Store(make_client(dead, "k", "s", "us-east-1", max_attempts=1, connect_timeout_s=0.5), dead,
               "backup S3 endpoint")
    with pytest.raises(ServiceUnreachable, match=f"backup S3 endpoint {dead} unreachable while listing"):
        list_dumps(st, settings, "mlflow")
