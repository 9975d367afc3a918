"""Ray job: score posts with a sentiment model on a Ray Data actor pool; writes POST_SCORES Parquet.

`ray job submit --working-dir . -- python jobs/score_sentiment.py --model finpulse-sentiment@champion \
    --num-actors 2 --cpus-per-actor 1` (then `python jobs/etl.py --scores <out>` uses the model scores)
"""

import argparse
import json

from finpulse.data.embedded import data_paths
from finpulse.sentiment.model import PRECISIONS
from finpulse.sentiment.score import curated_posts, score_posts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="finpulse-sentiment@champion", help="registry spec, folder or hub id")
    p.add_argument("--posts", help="Parquet URI with post_id, ticker, text (default: the ETL's curated posts)")
    p.add_argument("--curated", help="ETL output URI (default <data_root>/curated)")
    p.add_argument("--out", help="output URI (default <data_root>/scores)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--threads", type=int, help="torch threads per actor")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32; bf16 (CPUs with AVX512-BF16/AMX, or GPU); int8 dynamic quantization (CPU); auto")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per actor (cuda)")
    a = p.parse_args()
    paths = data_paths()
    posts = a.posts or curated_posts(a.curated or paths.curated)
    out = score_posts(posts, a.model, a.out or paths.scores, batch_size=a.batch_size, num_actors=a.num_actors,
                      num_cpus_per_actor=a.cpus_per_actor, threads=a.threads, precision=a.precision, gpus=a.gpus)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
