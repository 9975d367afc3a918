"""The one way FinPulse reaches MLflow: experiments, runs, logged models, registry aliases.

Models are logged as MLflow pyfunc models whose ``artifacts/model_dir`` holds the model in its own
format (a Hugging Face folder, a torch state dict plus scaler JSON); loading goes back through
:func:`download_model`, so serving needs only a registry name and alias, never a run id.

Aliases: ``challenger`` is what training last registered, ``champion`` what serving uses.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from finpulse.config import Settings, get_settings

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_DIR = "model_dir"


class DirectoryModel(mlflow.pyfunc.PythonModel):
    """A pyfunc shell around a folder: the registry's unit of versioning for FinPulse models.

    Prediction goes through FinPulse's own loaders (``finpulse.sentiment.model``,
    ``finpulse.forecast.model``), which read ``artifacts/model_dir``.
    """

    # a list[...] hint is what MLflow accepts without warnings; FinPulse never calls predict()
    def predict(self, context: Any, model_input: list[str], params: dict | None = None) -> list[str]:  # pragma: no cover
        raise NotImplementedError("load with finpulse.tracking.download_model and the FinPulse loader")


def configure(settings: Settings | None = None) -> str:
    """Point this process at the tracking server in settings; make local folders it needs."""
    s = settings or get_settings()
    uri = s.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment(name: str, settings: Settings | None = None) -> str:
    """Get or create an experiment by name and make it current; returns its id."""
    s = settings or get_settings()
    configure(s)
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        exp_id = mlflow.create_experiment(name, artifact_location=s.mlflow_artifact_location)
    else:
        exp_id = found.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@contextlib.contextmanager
def start_run(experiment_name: str, run_name: str | None = None, *, nested: bool = False,
              parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start a run in ``experiment_name`` (optionally as a child of ``parent_run_id``)."""
    experiment(experiment_name)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(run_name=run_name, nested=nested, tags=all_tags) as run:
        yield run


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as a PNG artifact of the active run."""
    mlflow.log_figure(fig, name)


def log_model_dir(local_dir: str | Path, *, registered_model_name: str | None = None,
                  alias: str | None = CHALLENGER, name: str = "model") -> ModelRef:
    """Log ``local_dir`` as the active run's model; register it and set ``alias`` when named."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=DirectoryModel(),
        artifacts={MODEL_DIR: str(local_dir)},
        pip_requirements=["finpulse"],
    )
    ref = ModelRef(uri=info.model_uri, name=registered_model_name, version=None)
    if registered_model_name:
        mv = mlflow.register_model(info.model_uri, registered_model_name)
        ref = ModelRef(uri=f"models:/{registered_model_name}/{mv.version}", name=registered_model_name,
                       version=str(mv.version), run_id=mv.run_id)
        if alias:
            set_alias(registered_model_name, alias, mv.version)
    return ref


@dataclass(frozen=True)
class ModelRef:
    """A model in the registry (or a bare logged model when ``name`` is None)."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}/v{self.version}" if self.name else self.uri


def set_alias(name: str, alias: str, version: str | int) -> None:
    configure()
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    configure()
    with contextlib.suppress(MlflowException):
        MlflowClient().delete_registered_model_alias(name, alias)


def get_version(name: str, alias: str) -> ModelRef | None:
    """The version behind ``name@alias``, or None when the alias (or model) does not exist."""
    configure()
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return ModelRef(uri=f"models:/{name}/{mv.version}", name=name, version=str(mv.version), run_id=mv.run_id)


def resolve(model: str) -> ModelRef:
    """Accept ``name@alias``, ``name/version``, ``models:/...`` or ``runs:/...`` and resolve it."""
    configure()
    spec = model[len("models:/") :] if model.startswith("models:/") else model
    if model.startswith("runs:/"):
        return ModelRef(uri=model, name=None, version=None)
    if "@" in spec:
        name, alias = spec.split("@", 1)
        ref = get_version(name, alias)
        if ref is None:
            raise LookupError(f"no model version has alias {alias!r} in {name!r}")
        return ref
    name, _, version = spec.partition("/")
    if not version:
        raise ValueError(f"model spec {model!r}: use name@alias, name/version or a runs:/ URI")
    mv = MlflowClient().get_model_version(name, version)
    return ModelRef(uri=f"models:/{name}/{mv.version}", name=name, version=str(mv.version), run_id=mv.run_id)


def download_model(model: str, dst: str | None = None) -> tuple[Path, ModelRef]:
    """Fetch a logged model's folder to local disk; returns ``(model_dir, ref)``."""
    if os.path.isdir(model):  # a plain local folder is a model too (tests, offline use)
        return Path(model), ModelRef(uri=model, name=None, version=None)
    ref = resolve(model)
    out = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=dst or tempfile.mkdtemp()))
    # pyfunc keeps an artifact folder under its own base name: the single folder below artifacts/
    folders = [p for p in (out / "artifacts").iterdir() if p.is_dir()] if (out / "artifacts").is_dir() else []
    if len(folders) != 1:
        raise FileNotFoundError(f"{ref.label}: expected one model folder under {out / 'artifacts'}, found {folders}")
    return folders[0], ref


def run_params(run_id: str) -> dict[str, str]:
    configure()
    return dict(MlflowClient().get_run(run_id).data.params)


def run_metrics(run_id: str) -> dict[str, float]:
    configure()
    return dict(MlflowClient().get_run(run_id).data.metrics)
