"""One real turn of the retraining loop on a real Ray, crashed after a step and rerun.

Embedded prices and a few synthetic posts; a tiny sentiment champion that already learnt from the
shipped labelled data (so the turn keeps it); a 1-epoch forecaster. The first run crashes right after
the evaluation's record is written; the rerun must finish the turn from there: nothing done is
redone, one MLflow child run per step under one parent, and a decision with its reasons. The
canary/soak half of a turn is tested against a deployed app in test_serve_canary_loop.py; the SIGKILL
at every boundary in test_loop_resume.py (and `make bench-pipeline` on this real turn).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from finpulse import pipeline, tracking
from finpulse.loop.turn import LoopOptions, run_turn
from finpulse.paths import data_paths
from finpulse.sentiment.datasets import shipped_version

pytestmark = pytest.mark.integration

DATA_STEPS = ["sentiment", "etl", "score", "etl_with_scores", "train_forecaster", "evaluate"]


class Crash(BaseException):
    """What a kill does to the turn: it stops wherever it is, past any ``except Exception``."""


def _tiny_sentiment_champion(tmp_path: Path) -> tracking.ModelRef:
    from tests.support.tiny_models import build_tiny_model

    with tracking.start_run(tracking.SENTIMENT_EXPERIMENT, "tiny-champion"):
        ref = tracking.log_model_dir(build_tiny_model(tmp_path / "tiny"), registered_model_name=tracking.SENTIMENT_MODEL,
                                     alias=tracking.CHAMPION)
    tracking.annotate_run(ref.run_id, tags={"labelled_data": shipped_version()})
    return ref


def test_a_crashed_turn_resumes_where_it_stopped_and_decides(ray_head: dict, finpulse_home: Path,
                                                             tmp_path: Path) -> None:
    import mlflow

    paths = data_paths()
    pipeline.prepare_data(paths, posts_per_day=0.3, signal_strength=0.5)
    sentiment = _tiny_sentiment_champion(tmp_path)
    options = LoopOptions(forecast_epochs=1, walk_forward_refits=1)

    def crash_after_evaluate(event: str, name: str) -> None:
        if event == "recorded" and name == "evaluate":
            raise Crash(name)

    with pytest.raises(Crash):
        run_turn(paths, options, hook=crash_after_evaluate)
    out = run_turn(paths, options)

    assert out.summary["steps_reused"] == DATA_STEPS  # done before the crash: not run again
    assert out.summary["redone_total"] == 0 and out.summary["attempt"] == 2
    gate = next(s for s in out.steps if s.name == "gate")
    assert gate.outputs["decision"] in ("promote", "reject") and gate.outputs["reasons"]
    if gate.outputs["decision"] == "promote":  # no app: the gate's verdict moves the alias
        assert out.outcome == "promoted" and out.summary["steps_ran"] == ["reference", "gate", "promote"]
        assert tracking.get_version(tracking.FORECAST_MODEL, tracking.CHAMPION) is not None
    else:
        assert out.outcome == "rejected" and out.summary["steps_ran"] == ["reference", "gate"]
        assert tracking.get_version(tracking.FORECAST_MODEL, tracking.CHAMPION) is None
    kept = next(s for s in out.steps if s.name == "sentiment")
    assert kept.outputs["decision"] == "kept"
    assert tracking.get_version(tracking.SENTIMENT_MODEL, tracking.CHAMPION).version == sentiment.version

    # the drift reference was recorded on the challenger's training run
    from finpulse.monitoring.job import load_reference

    reference = load_reference(f"{tracking.FORECAST_MODEL}/{next(s for s in out.steps if s.name == 'train_forecaster').outputs['version']}")
    assert reference.features and reference.predictions is not None and len(reference.predictions) > 0

    client = mlflow.MlflowClient(tracking.configure())
    exp = client.get_experiment_by_name(tracking.PIPELINE_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["finpulse.outcome"] == out.outcome
    finished = sorted(c.data.tags["finpulse.step"] for c in children if c.info.status == "FINISHED")
    assert finished == sorted([*DATA_STEPS, *out.summary["steps_ran"]])  # one child per step
    assert next(c for c in children if c.data.tags["finpulse.step"] == "gate").data.tags["finpulse.decision"] == \
        gate.outputs["decision"]
