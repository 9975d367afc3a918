"""Ray job: walk-forward evaluation of a registered forecaster against the baselines (logged to MLflow).

`python jobs/evaluate.py --model finpulse-forecaster@challenger --k 4`
"""

import argparse
import json

from finpulse.forecast.evaluate import WalkForwardConfig, evaluate_model, format_table
from finpulse.forecast.inputs import load_features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="finpulse-forecaster@challenger")
    p.add_argument("--features", help="ETL output URI (default <data_root>/curated)")
    p.add_argument("--embedded", action="store_true")
    p.add_argument("--wf", default="{}", help="WalkForwardConfig fields as JSON")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--out", help="also write report.md, metrics_table.csv and plots here")
    a = p.parse_args()
    wf = WalkForwardConfig(**{**json.loads(a.wf), "k": a.k})
    df = load_features(a.features, embedded=a.embedded)
    result = evaluate_model(df, a.model, wf=wf, out_dir=a.out)
    print(format_table(result.table))


if __name__ == "__main__":
    main()
