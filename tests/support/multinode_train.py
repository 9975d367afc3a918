"""The driver of tests/integration/test_multinode_checkpoints.py, run in its own process so that it joins the
test's two-node cluster (``FINPULSE_RAY_ADDRESS``) while the pytest process stays on the session's ``ray_head``.

`python -m tests.support.multinode_train SPEC_JSON`: trains the real forecaster (Ray Train, 2 workers that
each need one ``trainer_slot``, a resource each node has once) with :class:`HoldOnNode` as the epoch hook,
and prints one JSON line: resume points, the epochs of the history, the metrics, the model folder's files.
"""

from __future__ import annotations

import datetime as dt
import json
import sys


def main(spec: dict) -> dict:
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.inputs import synthetic_features
    from finpulse.forecast.train import TrainOptions, train_forecaster
    from finpulse.runtime import connect
    from tests.support.multinode import HoldOnNode

    connect()  # FINPULSE_RAY_ADDRESS: the test's head
    features = synthetic_features(["AAPL", "MSFT"], start="2018-06-01", end="2020-01-01", signal_strength=1.0)
    cfg = ForecastConfig(hidden_size=8, lookback=10, batch_size=64, tickers=["AAPL", "MSFT"], num_workers=2,
                         max_epochs=spec["epochs"], patience=10, val_end=dt.date(2019, 7, 1))
    hook = HoldOnNode(node=spec["kill_node"], epoch=spec["kill_epoch"], marker=spec["marker"], log=spec["log"])
    res = train_forecaster(features, cfg, TrainOptions(log_mlflow=False, register=False, max_failures=1,
                                                       worker_resources={"trainer_slot": 1}, on_epoch=hook))
    return {"resume_points": res.resume_points, "history_epochs": [int(h["epoch"]) for h in res.history],
            "metrics": res.metrics, "model_files": sorted(p.name for p in res.model_dir.iterdir())}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1])), default=float), flush=True)
