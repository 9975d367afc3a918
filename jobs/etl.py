"""Ray job: the ETL. `ray job submit --working-dir . -- python jobs/etl.py --prices ... --posts ... --out ...`"""

import argparse
import json

from finpulse.data.embedded import data_paths, stage_embedded
from finpulse.data.etl import run_etl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--prices", help="folder/URI of price files (Yahoo CSV, Alpha Vantage CSV/JSON)")
    p.add_argument("--posts", help="folder/URI of post files (posts CSV, StockNet JSONL, Kaggle pair)")
    p.add_argument("--out", help="output URI (default: <data_root>/curated)")
    p.add_argument("--scores", help="model scores (POST_SCORES Parquet) to use instead of VADER")
    p.add_argument("--embedded", action="store_true", help="stage the shipped prices and synthetic posts first")
    a = p.parse_args()
    paths = data_paths()
    if a.embedded:
        stage_embedded(paths)
    result = run_etl(a.prices or paths.raw_prices, a.posts or (paths.raw_posts if a.embedded or not a.prices else None),
                     a.out or paths.curated, scores_uri=a.scores)
    print(json.dumps({"version": result.version, "out": result.out_uri, "counts": result.manifest["counts"]}))


if __name__ == "__main__":
    main()
