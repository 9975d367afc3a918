"""The one MLflow door: a run logger that survives pickling (Ray workers, Tune trials) and child runs."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from mlflow import MlflowClient

from finpulse import tracking


def test_run_logger_pickles_and_logs_steps_tables_figures(finpulse_home: Path) -> None:
    with tracking.start_run("t-door", run_name="r", tags={"finpulse.kind": "test"}) as run:
        worker_side = pickle.loads(pickle.dumps(run))  # noqa: S301 - what a Ray worker receives; our own bytes
        for epoch, loss in enumerate([1.0, 0.5, float("nan")]):
            worker_side.log_metrics({"val_loss": loss, "note": "text is not a metric"}, step=epoch)
        worker_side.log_params({"layers": [1, 2], "lr": 0.01})
        worker_side.log_table(pd.DataFrame({"a": [1, 2]}), "tables/t.csv")
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        worker_side.log_figure(fig, "plots/p.png")
        run_id = run.run_id
    client = MlflowClient(tracking.configure())
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]  # NaN left out, steps kept
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"layers": "[1, 2]", "lr": "0.01"}
    assert "note" not in got.data.metrics
    files = {f.path for d in ("tables", "plots") for f in client.list_artifacts(run_id, d)}
    assert files == {"tables/t.csv", "plots/p.png"}


def test_failed_block_marks_the_run_failed(finpulse_home: Path) -> None:
    run_id = None
    try:
        with tracking.start_run("t-door") as run:
            run_id = run.run_id
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert MlflowClient(tracking.configure()).get_run(run_id).info.status == "FAILED"


def test_child_runs_annotation_and_cleanup(finpulse_home: Path) -> None:
    with tracking.start_run("t-door", run_name="parent") as parent:
        done = tracking.child_run(parent, "trial-a", tags={"finpulse.kind": "tune-trial"})
        done.log_metrics({"val_loss": 0.3}, step=1)
        done.end()
        stopped = tracking.child_run(parent, "trial-b")
        killed = tracking.end_unfinished_children(parent.run_id)
    assert killed == [stopped.run_id]
    client = MlflowClient(tracking.configure())
    assert client.get_run(done.run_id).info.status == "FINISHED"
    assert client.get_run(stopped.run_id).info.status == "KILLED"
    assert tracking.run_tags(done.run_id)["mlflow.parentRunId"] == parent.run_id
    tracking.annotate_run(done.run_id, metrics={"oos_mae": 1.5, "bad": math.inf}, tags={"decision": "reject"})
    assert tracking.run_metrics(done.run_id) == {"val_loss": 0.3, "oos_mae": 1.5}
    assert tracking.run_tags(done.run_id)["decision"] == "reject"
