"""Every dashboard page of this part in Streamlit's headless AppTest, on data made by the real ETL:
no exception, and the charts, metrics and tables show what the datasets hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from finpulse.config import get_settings
from finpulse.data import catalog
from finpulse.paths import data_paths
from tests.support.dashboard_env import use_home

pytestmark = pytest.mark.integration

ENTRY = str(Path(__file__).resolve().parents[2] / "finpulse" / "dashboard" / "server" / "main.py")


def page(module: str) -> AppTest:
    return AppTest.from_string(f"from finpulse.dashboard.pages import {module}\n{module}.render()", default_timeout=60)


def no_exception(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture()
def home(dashboard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    use_home(monkeypatch, dashboard_home)
    yield dashboard_home
    get_settings.cache_clear()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_posts_page_counts_posts_and_follows_the_ticker_filter(home: Path) -> None:
    curated = data_paths().curated
    posts = catalog.load_dataset(curated, "scored_posts", columns=["ticker", "source"])
    at = no_exception(page("posts").run())
    assert at.title[0].value == "Posts and prices"
    assert metrics(at)["Posts"] == f"{len(posts):,}"
    assert len(at.get("plotly_chart")) == 4 and len(at.get("download_button")) == 4  # volume, histogram, mix, price
    assert any("synthetic posts" in w.value for w in at.warning)  # generated posts are labelled
    assert len(at.dataframe) == 2  # the day's most positive and most negative posts
    at.sidebar.multiselect(key="f_tickers").set_value(["AAPL"]).run()
    no_exception(at)
    assert metrics(at)["Posts"] == f"{(posts['ticker'] == 'AAPL').sum():,}"


def test_signal_page_shows_the_pooled_correlation_of_the_daily_features(home: Path) -> None:
    feats = catalog.load_dataset(data_paths().curated, "daily_features")
    days = feats[(feats["sent_count"] > 0) & feats["target_ret_1d"].notna()]
    ref = stats.pearsonr(days["sent_mean"], days["target_ret_1d"])
    at = no_exception(page("signal").run())
    shown = metrics(at)
    assert shown["Pearson r"] == f"{ref.statistic:+.3f}" and shown["Days"] == f"{len(days):,}"
    assert len(at.get("plotly_chart")) == 3  # scatter with band, lagged cross-correlation, rolling
    table = at.dataframe[0].value
    assert table["scope"].tolist() == [*sorted(days["ticker"].unique()), "pooled"]
    at.radio(key="sig_scope").set_value("MSFT").run()
    msft = days[days["ticker"] == "MSFT"]
    assert metrics(no_exception(at))["Days"] == f"{len(msft):,}"


def test_quality_page_reconciles_every_version_and_shows_the_quarantine(home: Path) -> None:
    curated = data_paths().curated
    manifest = catalog.load_manifest(curated)
    at = no_exception(page("quality").run())
    shown = metrics(at)
    assert shown["ETL versions"] == "2" and shown["Latest"] == manifest["version"] and shown["Counts reconcile"] == "all"
    counts = at.dataframe[0].value
    latest = counts[(counts["version"] == manifest["version"]) & (counts["dataset"] == "posts")].iloc[0]
    assert latest["rows_in"] == manifest["counts"]["posts"]["rows_in"]
    assert latest["quarantined"] == manifest["counts"]["posts"]["quarantined"] > 0
    examples = at.dataframe[1].value
    assert set(examples["reason"]) == {r["reason"] for r in manifest["quarantine_reasons"]}
    assert shown["Code version"] == manifest["code_version"]
    assert set(at.dataframe[2].value["uri"]) == {f["uri"] for files in manifest["inputs"].values() for f in files}


def test_the_app_opens_on_the_posts_page(home: Path) -> None:
    at = no_exception(AppTest.from_file(ENTRY, default_timeout=60).run())
    assert at.title[0].value == "Posts and prices"


@pytest.mark.parametrize("module", ["posts", "signal", "quality"])
def test_an_empty_home_says_what_to_run(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_home(monkeypatch, tmp_path / "empty")
    at = no_exception(page(module).run())
    assert any("make demo" in i.value and "No curated data" in i.value for i in at.info), [i.value for i in at.info]
    get_settings.cache_clear()
