"""Ray job: train the LSTM forecaster with Ray Train and register it as finpulse-forecaster@challenger.

`ray job submit --working-dir . -- python jobs/train_forecaster.py --embedded --num-workers 2`
"""

import argparse
import json

from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.inputs import connect_ray, load_features
from finpulse.forecast.train import train_forecaster


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--features", help="ETL output URI (default <data_root>/curated)")
    p.add_argument("--embedded", action="store_true", help="shipped prices + synthetic posts instead")
    p.add_argument("--config", default="{}", help="ForecastConfig fields as JSON, e.g. '{\"hidden_size\": 64}'")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--start")
    p.add_argument("--end")
    a = p.parse_args()
    cfg = ForecastConfig(**{**json.loads(a.config), "num_workers": a.num_workers})
    df = load_features(a.features, embedded=a.embedded, tickers=cfg.tickers, start=a.start, end=a.end)
    connect_ray()
    r = train_forecaster(df, cfg)
    print(json.dumps({"model": r.ref.label if r.ref else str(r.model_dir), "run_id": r.run_id, **r.metrics}))


if __name__ == "__main__":
    main()
