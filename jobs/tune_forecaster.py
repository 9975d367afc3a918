"""Ray job: Ray Tune (ASHA) over the forecaster's hyperparameters; the best retrained and registered.

`ray job submit --working-dir . -- python jobs/tune_forecaster.py --embedded --num-samples 16`
"""

import argparse
import json

from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.inputs import connect_ray, load_features
from finpulse.forecast.tune import tune_forecaster


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--features", help="ETL output URI (default <data_root>/curated)")
    p.add_argument("--embedded", action="store_true")
    p.add_argument("--config", default="{}", help="base ForecastConfig fields as JSON")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    a = p.parse_args()
    base = ForecastConfig(**json.loads(a.config))
    df = load_features(a.features, embedded=a.embedded, tickers=base.tickers)
    connect_ray()
    r = tune_forecaster(df, base, num_samples=a.num_samples, max_concurrent=a.max_concurrent,
                        cpus_per_trial=a.cpus_per_trial, scheduler=a.scheduler)
    print(r.trials.to_string())
    print(json.dumps({"best": json.loads(r.best_config.model_dump_json()), "best_val_loss": r.best_val_loss,
                      "registered": r.train_result.ref.label if r.train_result and r.train_result.ref else None}))


if __name__ == "__main__":
    main()
