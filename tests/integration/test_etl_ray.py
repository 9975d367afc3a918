"""The Ray Data ETL as users run it: same result as the single-process reference, deterministic
reruns, versions published only when complete, S3 in and out, `ray job submit`, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pandas as pd
import pytest

from finpulse import storage
from finpulse.data import catalog, etl, reference, sources, synthetic
from finpulse.data.schemas import DAILY_FEATURES, SCORED_POSTS
from finpulse.resources import load_prices

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _stage(root: str, seed: int = 4) -> tuple[str, str, pd.DataFrame, list[bytes]]:
    """Raw inputs under `root`: Yahoo CSVs and three synthetic post CSVs with dirt and duplicates."""
    prices = load_prices(["AAPL", "MSFT", "TSLA"])
    reference.write_prices_csv(prices, storage.join(root, "prices"))
    posts = synthetic.generate_posts(prices, seed=seed, start="2020-01-01", duplicate_rate=0.02, posts_per_day=4)
    blobs = []
    for i in range(3):
        part = posts.iloc[i * len(posts) // 3:(i + 1) * len(posts) // 3]
        blob = synthetic.to_posts_csv(part, corrupt_rate=0.02, seed=i)
        storage.write_bytes(storage.join(root, "posts", f"part-{i}.csv"), blob)
        blobs.append(blob)
    return storage.join(root, "prices"), storage.join(root, "posts"), prices, blobs


def _reference(prices: pd.DataFrame, blobs: list[bytes]) -> dict:
    raw_posts = pd.concat([sources.read_posts_csv(b, "x") for b in blobs], ignore_index=True)
    return reference.build_pandas(reference.prices_to_raw(prices), raw_posts)


def _file_bytes(out: str, version: str) -> dict[str, bytes]:
    base = storage.join(out, f"v={version}")
    return {f: storage.read_bytes(f) for f in storage.list_files(base, ".parquet")}


def test_ray_etl_matches_reference_and_reruns_identically(ray_head: dict, tmp_path: Path) -> None:
    prices_uri, posts_uri, prices, blobs = _stage(str(tmp_path / "raw"))
    out = str(tmp_path / "curated")
    first = etl.run_etl(prices_uri, posts_uri, out)
    ref = _reference(prices, blobs)

    counts = first.manifest["counts"]
    for name in ("prices", "posts"):
        c, r = counts[name], ref["counts"][name]
        assert c["rows_in"] == c["rows_out"] + c["deduped"] + c["quarantined"]
        assert (c["rows_in"], c["rows_out"], c["deduped"], c["quarantined"]) == (
            r.rows_in, r.rows_out, r.deduped, r.quarantined)
    assert counts["posts"]["quarantined"] > 0 and counts["posts"]["deduped"] > 0

    features = catalog.load_dataset(out, "daily_features")
    assert list(features.columns) == DAILY_FEATURES.names
    expected = ref["daily_features"].reset_index(drop=True)
    pd.testing.assert_frame_equal(features.reset_index(drop=True), expected.astype(features.dtypes.to_dict()),
                                  check_dtype=False)
    posts = catalog.load_dataset(out, "scored_posts")
    assert list(posts.columns) == SCORED_POSTS.names and len(posts) == counts["posts"]["rows_out"]
    quarantine = catalog.load_dataset(out, "quarantine")
    assert len(quarantine) == counts["posts"]["quarantined"] + counts["prices"]["quarantined"]
    assert set(quarantine["run_id"]) == {first.version} and quarantine["reason"].str.len().gt(0).all()
    assert first.manifest["synthetic_inputs"] is True
    assert not storage.exists(storage.join(out, f"v={first.version}", "_staging"))

    before = _file_bytes(out, first.version)
    second = etl.run_etl(prices_uri, posts_uri, out)
    assert second.version == first.version
    assert _file_bytes(out, second.version) == before  # byte-identical rerun
    _assert_identity(first.manifest, blobs)
    # one changed byte of one input (same size) is a new version, and LATEST moves to it
    post = Path(posts_uri) / "part-1.csv"
    data = bytearray(post.read_bytes())
    at = next(i for i in range(len(data) // 2, len(data)) if chr(data[i]).islower())
    data[at] ^= 0x20  # a lower-case letter in the second half (a post's text) to upper case
    post.write_bytes(bytes(data))
    third = etl.run_etl(prices_uri, posts_uri, out)
    assert third.version != first.version and catalog.latest_version(out) == third.version
    assert third.manifest["identity"]["code"] == first.manifest["identity"]["code"]
    import ray.data  # the ETL lifts Ray Data's CPU reservation only while it runs

    assert ray.data.DataContext.get_current().op_resource_reservation_enabled


def _assert_identity(manifest: dict, blobs: list[bytes]) -> None:
    """The manifest says what the version id is made of, and the post files' hashes are their bytes'."""
    identity = manifest["identity"]
    assert identity["hash"] == manifest["version"]
    assert [e["sha256"] for e in manifest["inputs"]["posts"]] == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert {"finpulse.data.curate", "finpulse.data.etl"} <= set(identity["code"]["modules"])
    assert identity["bytes_hashed"] >= sum(map(len, blobs)) and identity["seconds"] >= 0


def test_half_written_version_is_invisible(ray_head: dict, tmp_path: Path) -> None:
    prices_uri, posts_uri, _, _ = _stage(str(tmp_path / "raw"), seed=9)
    out = str(tmp_path / "curated")
    done = etl.run_etl(prices_uri, posts_uri, out)
    # a second version whose writer died before its manifest: readers keep seeing the complete one
    broken = Path(out) / "v=deadbeef0000" / "daily_features" / "ticker=AAPL"
    broken.mkdir(parents=True)
    (broken / "part-0.parquet").write_bytes(b"garbage")
    assert catalog.latest_version(out) == done.version
    assert len(catalog.load_dataset(out, "daily_features", tickers=["AAPL"])) > 0


def test_etl_on_real_s3(ray_head: dict, s3_server: dict, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"], aws_access_key_id=s3_server["key"],
                      aws_secret_access_key=s3_server["secret"], region_name="us-east-1")
    for bucket in ("finpulse-raw", "finpulse-curated"):
        s3.create_bucket(Bucket=bucket)
    prices_uri, posts_uri, prices, blobs = _stage("s3://finpulse-raw/in", seed=5)
    os.environ.update({"AWS_ACCESS_KEY_ID": s3_server["key"], "AWS_SECRET_ACCESS_KEY": s3_server["secret"]})
    result = etl.run_etl(prices_uri, posts_uri, "s3://finpulse-curated/out")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="finpulse-curated", Prefix="out/")["Contents"]}
    assert f"out/v={result.version}/manifest.json" in keys and "out/LATEST" in keys
    _assert_identity(result.manifest, blobs)  # inputs hashed through S3 too
    assert any(k.startswith(f"out/v={result.version}/daily_features/ticker=TSLA/") for k in keys)
    features = catalog.load_dataset("s3://finpulse-curated/out", "daily_features")
    ref = _reference(prices, blobs)["daily_features"]
    assert len(features) == len(ref)
    assert features["sent_mean"].sum() == pytest.approx(ref["sent_mean"].sum())
    # the wrong secret is refused by the server, not silently ignored
    bad = boto3.client("s3", endpoint_url=s3_server["endpoint"], aws_access_key_id=s3_server["key"],
                       aws_secret_access_key="wrong", region_name="us-east-1")  # pragma: allowlist secret - wrong on purpose
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|Forbidden"):
        bad.list_objects_v2(Bucket="finpulse-curated")


def test_ray_job_submit_runs_the_etl_job(ray_head: dict, tmp_path: Path) -> None:
    prices_uri, posts_uri, _, _ = _stage(str(tmp_path / "raw"), seed=6)
    out = tmp_path / "job-out"
    env = {**os.environ, "RAY_ADDRESS": ray_head["dashboard"]}
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps({"excludes": [".venv", ".git", ".finpulse", "benchmarks/results"]}),
           "--", "python", "jobs/etl.py", "--prices", prices_uri, "--posts", posts_uri, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    manifest = catalog.load_manifest(str(out))
    assert manifest["counts"]["posts"]["rows_out"] > 0
    assert len(catalog.load_dataset(str(out), "daily_features")) == manifest["feature_rows"]


def test_cli_etl_embedded(ray_head: dict, finpulse_home: Path) -> None:
    from typer.testing import CliRunner

    from finpulse.cli import app

    result = CliRunner().invoke(app, ["etl", "--embedded", "--posts-per-day", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["counts"]["posts"]["rows_out"] > 0
    features = catalog.load_dataset(str(finpulse_home / "data" / "curated"), "daily_features")
    assert sorted(features["ticker"].unique()) == ["AAPL", "AMZN", "GOOG", "MSFT", "TSLA"]
