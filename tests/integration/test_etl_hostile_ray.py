"""The Ray Data ETL over a folder of hostile files (issue 14): it completes, every bad file and row is
quarantined with a reason, and its counts equal the single-process reference's on the same bytes.

The readers' properties are tested at the pure core (tests/unit/test_readers_properties*.py); this is
the one run through the Ray shell that maps them, and the regression test for a bug only the shell
had: with no duplicate post anywhere, the duplicates stage got a frame without columns (KeyError).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from finpulse.data import etl, reference, sources
from finpulse.resources import load_prices

pytestmark = pytest.mark.integration


def _hostile_folder(root: Path) -> tuple[str, str]:
    """Prices: a good Yahoo CSV, one truncated after a row with a surplus field, random bytes, an Alpha
    Vantage error reply. Posts: a stray CSV, half a Kaggle pair, a posts CSV with bad lines, a truncated
    StockNet .jsonl.gz with a U+2028 in every text. No post repeats another."""
    (root / "prices").mkdir(parents=True)
    (root / "posts" / "kaggle").mkdir(parents=True)
    prices = load_prices(["AAPL"])
    reference.write_prices_csv(prices[prices["date"].astype(str) >= "2020-06-01"], str(root / "prices"))
    good = (root / "prices" / "AAPL.csv").read_bytes()
    (root / "prices" / "MSFT.csv").write_bytes(good[:2000] + b'\n2020-07-01,1,2,1,1,1,5,extra\n"2020-07-02,1')
    (root / "prices" / "garbage.csv").write_bytes(bytes(range(256)))
    (root / "prices" / "TIME_SERIES_DAILY_X.json").write_bytes(b'{"Note": "API call frequency exceeded"}')
    (root / "posts" / "notes.csv").write_text("hello,world\n")
    (root / "posts" / "kaggle" / "Tweet.csv").write_bytes(b"tweet_id,writer,post_date,body\n1,w,1593626400,hi\n")
    (root / "posts" / "posts.csv").write_bytes(
        b"post_id,ticker,created_at,text,author,likes,reposts,source\n"
        b"a,AAPL,2020-07-01T15:00:00Z,great quarter,u,1,0,t\nb,AAPL,2020-07-01T15:00:00Z,hi, there,u,0,0,t\n"
        b"c,AAPL,2020-07-01T15:00:00Z,caf\xe9,u,0,0,t\nd,AAPL,2020-07-01T15:00:00Z,big,u,inf,0,t\n")
    lines = b"\n".join(json.dumps({"created_at": "Wed Jul 01 15:00:00 +0000 2020", "user_id_str": str(i),
                                   "text": f"tweet {i}\u2028more"}, ensure_ascii=False).encode() for i in range(5))
    (root / "posts" / "AAPL.jsonl.gz").write_bytes(gzip.compress(lines + b"\n[1]\n")[:-10])
    return str(root / "prices"), str(root / "posts")


def test_ray_etl_quarantines_hostile_files_and_counts_like_the_reference(ray_head: dict, tmp_path: Path) -> None:
    prices_uri, posts_uri = _hostile_folder(tmp_path / "raw")
    result = etl.run_etl(prices_uri, posts_uri, str(tmp_path / "curated"))

    raw_prices = pd.concat([sources.read_price_file(str(f), f.read_bytes()) for f in sorted(Path(prices_uri).iterdir())])
    raw_posts = pd.concat([sources.read_raw_posts(i) for i in sources.discover_post_inputs(posts_uri)])
    ref = reference.build_pandas(raw_prices, raw_posts)["counts"]
    for name in ("prices", "posts"):
        c, r = result.manifest["counts"][name], ref[name]
        assert (c["rows_in"], c["rows_out"], c["deduped"], c["quarantined"]) == (
            r.rows_in, r.rows_out, r.deduped, r.quarantined), name
    reasons = {(q["dataset"], q["reason"]) for q in result.manifest["quarantine_reasons"]}
    assert {("prices", "unreadable file: unknown price file format"),
            ("prices", "unreadable file: no 'Time Series (Daily)' object (an API error message?)"),
            ("prices", "more fields than the header"),
            ("prices", "unterminated quoted field (a truncated file?)"),
            ("posts", "unreadable file: unknown post file format"),
            ("posts", "unreadable file: Tweet.csv without Company_Tweet.csv"),
            ("posts", "more fields than the header"), ("posts", "bytes that are not UTF-8"),
            ("posts", "likes not a non-negative integer"),
            ("posts", "truncated gzip stream: rows after this point are lost")} <= reasons
    assert result.manifest["counts"]["posts"]["rows_out"] >= 2  # post a, and StockNet tweets before the cut
