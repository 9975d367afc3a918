"""pipeline.py's data stages on a real Ray: the staged embedded inputs through the Ray ETL, and the
result object agreeing with what was published."""

from __future__ import annotations

from pathlib import Path

import pytest

from finpulse import pipeline
from finpulse.data import catalog
from finpulse.data.etl import ETL_STAGES
from finpulse.paths import DataPaths

pytestmark = pytest.mark.integration


def test_prepare_then_etl_reports_the_published_version(ray_head: dict, tmp_path: Path) -> None:
    paths = DataPaths(str(tmp_path / "data"))
    prepared = pipeline.prepare_data(paths, posts_per_day=0.3, signal_strength=0.5)
    heard: list[str] = []
    curated = pipeline.run_etl(paths, on_stage=heard.append)
    assert heard == list(ETL_STAGES)
    assert curated.out_uri == paths.curated and curated.version == catalog.latest_version(paths.curated)
    published = catalog.load_manifest(paths.curated)
    # the ETL's last stage timing is added to the returned manifest after the published one is written
    assert {k: v for k, v in curated.manifest.items() if k != "stage_seconds"} == \
        {k: v for k, v in published.items() if k != "stage_seconds"}
    posts = curated.manifest["counts"]["posts"]
    assert posts["rows_in"] == prepared.posts and posts["rows_out"] + posts["deduped"] < prepared.posts  # dirt quarantined
    assert curated.manifest["counts"]["prices"]["rows_out"] == prepared.price_bars
    features = curated.features()
    assert features.attrs["synthetic_inputs"] is True
    assert curated.per_ticker["posts"].sum() == posts["rows_out"] == features["sent_count"].sum()
    assert sorted(curated.per_ticker.index) == sorted(features["ticker"].unique())
