"""The one way FinPulse reaches MLflow: experiments, runs, logged models, registry aliases.

The package is the one door: :mod:`.client` connects (bounded retries, a dead server named in one error),
:mod:`.registry` holds model versions and aliases (registration as one transaction), and this module the
runs; everything is re-exported here, so callers write ``tracking.<name>``.

Models are logged as MLflow pyfunc models whose ``artifacts/model_dir`` holds the model in its own
format (a Hugging Face folder, a torch state dict plus scaler JSON); loading goes back through
:func:`download_model`, so serving needs only a registry name and alias, never a run id.

Aliases: ``challenger`` is what training last registered, ``champion`` what serving uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from finpulse import outages
from finpulse.config import Settings, get_settings
from finpulse.names import (  # noqa: F401 (re-exported: the names belong with the door to the registry)
    CHALLENGER,
    CHAMPION,
    FORECAST_EXPERIMENT,
    FORECAST_MODEL,
    PIPELINE_EXPERIMENT,
    SENTIMENT_EXPERIMENT,
    SENTIMENT_MODEL,
    model_spec,
)
from finpulse.tracking.client import (  # noqa: F401 (re-exported)
    TRACKING_SERVER,
    configure,
    http_limits,
    reaching_client,
    server_url,
    unreachable_as_error,
)
from finpulse.tracking.registry import (  # noqa: F401 (re-exported)
    MODEL_DIR,
    PENDING_TAG,
    STEPS,
    DirectoryModel,
    ModelRef,
    delete_alias,
    download_model,
    get_version,
    half_registered,
    log_model_dir,
    model_versions,
    resolve,
    set_alias,
    sweep_registrations,
    verify_version,
    version_created_at,
)


def experiment(name: str, settings: Settings | None = None) -> str:
    """Get or create an experiment by name and make it current; returns its id."""
    s = settings or get_settings()
    configure(s)
    found = mlflow.get_experiment_by_name(name)
    exp_id = found.experiment_id if found else mlflow.create_experiment(name, artifact_location=s.mlflow_artifact_location)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLogger:
    """Logs to one MLflow run by id: picklable, so Ray workers and Tune trials log the same way the driver does.

    Every FinPulse run is written through one of these (the driver's from :func:`start_run`, a
    worker's handed over in its config, a trial's from :func:`child_run`), so runs look alike
    whichever process wrote them.
    """

    run_id: str
    tracking_uri: str
    http: tuple[tuple[str, str], ...] = field(default_factory=lambda: tuple(http_limits().items()))

    def _client(self) -> MlflowClient:
        os.environ.update(dict(self.http))  # a Ray worker gets the driver's retry bounds with the logger
        return reaching_client(self.tracking_uri)

    def log_params(self, params: dict[str, Any]) -> None:
        """Lists and dicts are stored as JSON; values are cut to MLflow's 6,000-character limit."""
        def text(v: Any) -> str:
            return (json.dumps(v) if isinstance(v, list | tuple | dict) else str(v))[:6000]
        self._client().log_batch(self.run_id, params=[Param(k, text(v)) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Non-finite and non-numeric values are left out (MLflow would store NaN as a number)."""
        ts = int(time.time() * 1000)
        rows = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
        if rows:
            self._client().log_batch(self.run_id, metrics=rows)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._client().log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
    def log_dict(self, data: Any, artifact_file: str) -> None:
        self._client().log_dict(self.run_id, data, artifact_file)
    def log_text(self, text: str, artifact_file: str) -> None:
        self._client().log_text(self.run_id, text, artifact_file)
    def end(self, status: str = "FINISHED") -> None:
        self._client().set_terminated(self.run_id, status=status)

    def log_table(self, frame: Any, artifact_file: str) -> None:
        """A pandas frame as CSV (readable in the MLflow UI and by any tool)."""
        self._client().log_text(self.run_id, frame.to_csv(index=False), artifact_file)

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact."""
        self._client().log_figure(self.run_id, fig, artifact_file)


@dataclass
class EpochLogger:
    """Rank 0's per-epoch metrics (``keys`` of each epoch's dict), logged live while the tracking server
    answers. Training does not need MLflow (checkpoints go to Ray's storage): once the server is gone, the
    worker stops trying (one warning, one retry budget spent) and keeps each epoch's metrics in ``late``
    (a list the caller checkpoints, so it survives a restarted worker group); the driver logs them after
    training with :func:`log_late_epochs`."""

    run: RunLogger | None
    keys: tuple[str, ...]
    late: list[dict[str, float]] = field(default_factory=list)
    gone: bool = False

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        row = {k: metrics[k] for k in self.keys}
        if not self.gone:
            try:
                self.run.log_metrics(row, step=step)
                return
            except outages.ServiceUnreachable as exc:
                self.gone = True
                log.warning("%s: training goes on; epochs from %d are logged after it", exc, step)
        self.late.append({"step": step, **row})


def log_late_epochs(run: RunLogger, late: list[dict[str, float]]) -> int:
    """Log what :class:`EpochLogger` kept, each epoch once with its step; returns how many epochs."""
    by_step = {int(row["step"]): row for row in late}
    for step, row in sorted(by_step.items()):
        run.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
    return len(by_step)


def _tags_with_parent(tags: dict[str, str] | None, parent_run_id: str | None) -> dict[str, str]:
    return {**(tags or {}), **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}


@contextlib.contextmanager
def start_run(experiment_name: str, run_name: str | None = None, *, parent_run_id: str | None = None,
              tags: dict[str, str] | None = None) -> Iterator[RunLogger]:
    """Start a run in ``experiment_name`` (optionally a child of ``parent_run_id``); it is also the active run.
    It ends FINISHED, or FAILED when the block raises; a tracking server that is gone is one
    :class:`~finpulse.outages.ServiceUnreachable` naming it, whichever call found it gone."""
    uri = configure()
    with unreachable_as_error(uri, f"starting a run in {experiment_name!r}"):
        experiment(experiment_name)
        run = mlflow.start_run(run_name=run_name, tags=_tags_with_parent(tags, parent_run_id))
    run_id = run.info.run_id
    try:
        yield RunLogger(run_id, uri)
    except BaseException as exc:
        # ending the run FAILED needs the server too: when it is gone, only the local state is cleared
        # (without retries), and the block's own error is what the caller sees (the run stays RUNNING)
        if isinstance(exc, outages.ServiceUnreachable) and exc.service == TRACKING_SERVER:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        with contextlib.suppress(Exception):
            _end_if_active(run_id, "FAILED")
        os.environ.update(http_limits())
        raise
    with unreachable_as_error(uri, f"ending run {run_id}"):
        _end_if_active(run_id, "FINISHED")


def _end_if_active(run_id: str, status: str) -> None:
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as an image artifact of the active run."""
    mlflow.log_figure(fig, name)


def child_run(parent: RunLogger, run_name: str, tags: dict[str, str] | None = None) -> RunLogger:
    """A run nested under ``parent`` that any process can create (Tune trials); end it with ``end()``."""
    client = MlflowClient(parent.tracking_uri)
    run = client.create_run(client.get_run(parent.run_id).info.experiment_id, run_name=run_name,
                            tags=_tags_with_parent(tags, parent.run_id))
    return RunLogger(run.info.run_id, parent.tracking_uri)


def annotate_run(run_id: str, *, metrics: dict[str, Any] | None = None, tags: dict[str, Any] | None = None) -> None:
    """Add metrics or tags to a finished run (evaluation and promotion write back to the training run)."""
    logger = RunLogger(run_id, configure())
    logger.log_metrics(metrics or {})
    logger.set_tags(tags or {})


def run_experiment_id(run_id: str) -> str:
    return MlflowClient(configure()).get_run(run_id).info.experiment_id


def run_tags(run_id: str) -> dict[str, str]:
    return dict(MlflowClient(configure()).get_run(run_id).data.tags)


def end_unfinished_children(parent_run_id: str, status: str = "KILLED") -> list[str]:
    """Mark child runs still RUNNING as ``status`` (trials a scheduler stopped, workers that died)."""
    client = MlflowClient(configure())
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for run in runs:
        client.set_terminated(run.info.run_id, status=status)
    return [r.info.run_id for r in runs]


def run_params(run_id: str) -> dict[str, str]:
    return dict(MlflowClient(configure()).get_run(run_id).data.params)


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(MlflowClient(configure()).get_run(run_id).data.metrics)


# --- runs that outlive a process (the retraining loop: finpulse.loop.steps) --------------------------

def open_run(experiment_name: str, run_name: str, tags: dict[str, str] | None = None) -> RunLogger:
    """A top-level run that is NOT made active and stays RUNNING until ``end()``: a retraining turn's
    parent run spans several processes (a crash, then a resume), and its steps call trainers that open
    their own active runs, which an active parent would turn into an error."""
    uri = configure()
    client = MlflowClient(uri)
    run = client.create_run(experiment(experiment_name), run_name=run_name, tags=dict(tags or {}))
    return RunLogger(run.info.run_id, uri)


def run_status(run_id: str) -> str:
    """RUNNING, FINISHED, FAILED or KILLED: a resumed turn repairs the child runs a crash left open."""
    return MlflowClient(configure()).get_run(run_id).info.status


# ---- artifact folders of a run (drift references and reports) ------------------------------------

def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
    """Log every file under ``local_dir`` to ``run_id`` (under ``artifact_path``); the run may be finished."""
    MlflowClient(configure()).log_artifacts(run_id, str(local_dir), artifact_path)


def download_artifacts(run_id: str, artifact_path: str, dst: str | Path | None = None) -> Path:
    """Fetch a run's artifact (file or folder) to local disk; FileNotFoundError when the run has none there."""
    configure()
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                        dst_path=str(dst or tempfile.mkdtemp())))
    except (MlflowException, OSError) as exc:
        raise FileNotFoundError(f"run {run_id} has no artifact {artifact_path!r}: {exc}") from exc


# ---- serving: who moved which version where, and how old a version is (issue 11, serving side) ----

SERVING_EXPERIMENT = "finpulse-serving"


def record_event(experiment_name: str, run_name: str, *, params: dict[str, Any], tags: dict[str, Any],
                 parent_run_id: str | None = None) -> str:
    """A finished run that records one event (a promotion, a rollback); returns its id.

    Written through the client, never ``mlflow.start_run``: the caller (the retraining loop) may have a
    run active in this process, and an event must neither end it nor nest under it by accident."""
    client = MlflowClient(configure())
    found = client.get_experiment_by_name(experiment_name)
    exp_id = found.experiment_id if found else client.create_experiment(
        experiment_name, artifact_location=get_settings().mlflow_artifact_location)
    run = client.create_run(exp_id, run_name=run_name, tags=_tags_with_parent(
        {k: str(v)[:5000] for k, v in tags.items()}, parent_run_id))
    logger = RunLogger(run.info.run_id, client.tracking_uri)
    logger.log_params(params)
    logger.end("FINISHED")
    return run.info.run_id


def find_runs(experiment_name: str, filter_string: str = "", max_results: int = 20) -> list[dict[str, Any]]:
    """Runs newest first as dicts (run_id, run_name, start_time, tags, metrics); [] without the experiment."""
    client = MlflowClient(configure())
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], filter_string, max_results=max_results,
                              order_by=["attributes.start_time DESC"]) if exp else []
    return [{"run_id": r.info.run_id, "run_name": r.info.run_name, "start_time": r.info.start_time / 1000.0,
             "tags": dict(r.data.tags), "metrics": dict(r.data.metrics)} for r in runs]
