"""Model versions and aliases, and registering a version as one transaction, so the registry never
offers half a registration.

Models are logged as pyfunc models whose ``artifacts/model_dir`` holds the model in its own format;
:func:`download_model` fetches that folder back, so serving needs only ``name@alias``.

MLflow registers in separate requests (create the version, then move an alias to it); a process or a
tracking server that dies in between leaves a version that looks registered but never got its alias.
:func:`log_model_dir` registers in four steps (:data:`STEPS`; ``on_step(name)`` runs after each, a test's hook):

1. ``version_created``: the version is created already tagged ``finpulse.registration=pending``
   (one request: the version is never visible without the mark);
2. ``verified``: its artifacts are listed (the MLmodel file and the model folder are there);
3. ``aliased``: the alias moves to it (readers resolving ``name@alias`` see it from here on);
4. ``complete``: the pending tag is removed.

A failure before the alias moved deletes the version when the server still answers. When it does not,
the version stays, marked pending, and the next registration of that model (or :func:`sweep_registrations`)
deletes it once it is older than ``settings.registration_grace_s`` (a younger one may be another process's
registration in flight). A pending version that already holds an alias was verified: the sweep completes it
rather than delete what serving may already use.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from finpulse import outages
from finpulse.config import get_settings
from finpulse.names import CHALLENGER
from finpulse.tracking.client import configure, reaching_client, server_url, unreachable_as_error

PENDING_TAG = "finpulse.registration"
PENDING = "pending"
STEPS = ("version_created", "verified", "aliased", "complete")

MODEL_DIR = "model_dir"


class DirectoryModel(mlflow.pyfunc.PythonModel):
    """A pyfunc shell around a folder, the registry's unit of versioning: prediction goes through FinPulse's
    own loaders (``finpulse.sentiment.model``, ``finpulse.forecast.model``), which read ``artifacts/model_dir``."""

    # a list[...] hint is what MLflow accepts without warnings; FinPulse never calls predict()
    def predict(self, context: Any, model_input: list[str], params: dict | None = None) -> list[str]:  # pragma: no cover
        raise NotImplementedError("load with finpulse.tracking.download_model and the FinPulse loader")


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
    MlflowClient(configure()).set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    with contextlib.suppress(MlflowException):
        MlflowClient(configure()).delete_registered_model_alias(name, alias)


def get_version(name: str, alias: str) -> ModelRef | None:
    """The version behind ``name@alias``, or None when the alias (or model) does not exist."""
    try:
        mv = MlflowClient(configure()).get_model_version_by_alias(name, alias)
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


def version_created_at(name: str, version: str | int) -> float | None:
    """When a registered model version was created (epoch seconds), or None when it is unknown."""
    try:
        mv = MlflowClient(configure()).get_model_version(name, str(version))
    except MlflowException:
        return None
    return mv.creation_timestamp / 1000.0 if mv.creation_timestamp else None


def model_versions(name: str) -> list[dict[str, Any]]:
    """Versions of ``name`` newest first (version, aliases, created_at in epoch s, run_id); [] when unregistered
    (the dashboard's registry table)."""
    client = MlflowClient(configure())
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return []
    return [{"version": str(v.version), "aliases": sorted(a for a, n in aliases.items() if str(n) == str(v.version)),
             "created_at": v.creation_timestamp / 1000.0, "run_id": v.run_id}
            for v in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))]


def log_model_dir(local_dir: str | Path, *, registered_model_name: str | None = None,
                  alias: str | None = CHALLENGER, name: str = "model",
                  on_step: Callable[[str], None] | None = None) -> ModelRef:
    """Log ``local_dir`` as the active run's model; register it and move ``alias`` to it when named, as one
    transaction (see the module docstring; ``on_step`` is its per-step hook)."""
    uri = configure()
    with unreachable_as_error(uri, f"logging model {registered_model_name or name}"):
        info = mlflow.pyfunc.log_model(name=name, python_model=DirectoryModel(),
                                       artifacts={MODEL_DIR: str(local_dir)}, pip_requirements=["finpulse"])
    if not registered_model_name:
        return ModelRef(uri=info.model_uri, name=None, version=None)
    with unreachable_as_error(uri, f"registering {registered_model_name}"):
        mv = _register(reaching_client(uri), info.model_uri, registered_model_name, alias, server_url(uri),
                       on_step or (lambda _step: None))
    return ModelRef(uri=f"models:/{registered_model_name}/{mv.version}", name=registered_model_name,
                    version=str(mv.version), run_id=mv.run_id)


def _register(client: Any, model_uri: str, name: str, alias: str | None, endpoint: str | None,
              step: Callable[[str], None]) -> ModelVersion:
    """The four steps; on failure, roll back what can be (see the module docstring)."""
    sweep(client, name, older_than_s=get_settings().registration_grace_s)
    mv = mlflow.register_model(model_uri, name, tags={PENDING_TAG: PENDING})
    version, aliased = str(mv.version), False
    try:
        step("version_created")
        _verify(client, name, version)
        step("verified")
        if alias:
            client.set_registered_model_alias(name, alias, version)
            aliased = True
            step("aliased")
        client.delete_model_version_tag(name, version, PENDING_TAG)
        step("complete")
    except BaseException:
        if not aliased and (endpoint is None or outages.answers(endpoint)):
            with contextlib.suppress(Exception):  # the original failure is the one to report
                client.delete_model_version(name, version)
        raise
    return mv


def verify_version(name: str, version: str | int) -> None:
    """Raise FileNotFoundError unless ``name/version`` holds what :func:`download_model` reads."""
    _verify(reaching_client(configure()), name, str(version))


def _verify(client: Any, name: str, version: str) -> None:
    """Raise FileNotFoundError unless the version's artifacts hold an MLmodel file and one non-empty model
    folder (what :func:`download_model` reads)."""
    def names(uri: str) -> dict[str, bool]:  # entry -> is a folder
        return {f.path.rsplit("/", 1)[-1]: f.is_dir for f in mlflow.artifacts.list_artifacts(artifact_uri=uri)}

    root = client.get_model_version_download_uri(name, version)
    top = names(root)
    folders = [k for k, is_dir in names(f"{root}/artifacts").items() if is_dir] if top.get("artifacts") else []
    if "MLmodel" not in top or len(folders) != 1 or not names(f"{root}/artifacts/{folders[0]}"):
        raise FileNotFoundError(f"{name}/v{version}: {root} lacks MLmodel or a non-empty model folder")


def half_registered(name: str) -> list[dict[str, Any]]:
    """Versions of ``name`` still marked pending by a registration that did not finish (version, aliases,
    created_at in epoch s)."""
    return _pending(reaching_client(configure()), name)


def _pending(client: Any, name: str) -> list[dict[str, Any]]:
    versions = [v for v in client.search_model_versions(f"name = '{name}'")
                if (v.tags or {}).get(PENDING_TAG) == PENDING]
    if not versions:
        return []
    aliases = client.get_registered_model(name).aliases  # search results do not carry aliases
    return [{"version": str(v.version), "created_at": (v.creation_timestamp or 0) / 1000.0,
             "aliases": sorted(a for a, n in aliases.items() if str(n) == str(v.version))}
            for v in sorted(versions, key=lambda v: int(v.version))]


def sweep(client: Any, name: str, *, older_than_s: float) -> dict[str, list[str]]:
    """Finish what crashed registrations left, for versions older than ``older_than_s``: delete pending
    versions without an alias, complete those that hold one. Returns the versions per outcome."""
    done: dict[str, list[str]] = {"deleted": [], "completed": []}
    for v in _pending(client, name):
        if time.time() - v["created_at"] < older_than_s:
            continue
        if v["aliases"]:
            client.delete_model_version_tag(name, v["version"], PENDING_TAG)
            done["completed"].append(v["version"])
        else:
            client.delete_model_version(name, v["version"])
            done["deleted"].append(v["version"])
    return done


def sweep_registrations(name: str, older_than_s: float | None = None) -> dict[str, list[str]]:
    """:func:`sweep` on the configured server (default grace: ``settings.registration_grace_s``)."""
    grace = get_settings().registration_grace_s if older_than_s is None else older_than_s
    return sweep(reaching_client(configure()), name, older_than_s=grace)
