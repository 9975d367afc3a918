"""Posts pushed over HTTP (``POST /v1/posts``): checked row by row with the ETL's own validation, the
good ones published to the live feed, the bad ones kept on the dead-letter stream with their reason."""

from __future__ import annotations

from typing import Any

import pandas as pd

from finpulse.data import sources
from finpulse.ingest.broker import Feed

DEFAULT_SOURCE = "api"


async def publish_posts(feed: Feed, posts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of accepted / duplicate / rejected, and each rejection's index, post id and reason."""
    frame = pd.DataFrame(posts)
    if "source" not in frame:
        frame["source"] = DEFAULT_SOURCE
    raw = sources.raw_frame(frame, sources.RAW_POST_COLUMNS)
    _, rejected = sources.normalize_posts(raw)
    bad_rows = set(rejected["row"].tolist())
    good = raw.iloc[[i for i in range(len(raw)) if i not in bad_rows]]
    counts = await feed.publish_frame("post", good)
    rejections = []
    for row, reason in zip(rejected["row"], rejected["reason"], strict=True):
        record = raw.iloc[int(row)].to_dict()
        await feed.reject("post", record, reason)
        rejections.append({"index": int(row), "post_id": record.get("post_id"), "reason": reason})
    return {"accepted": counts.published, "duplicate": counts.duplicate, "rejected": len(rejections),
            "rejections": rejections}
