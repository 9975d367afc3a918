"""Registration as one transaction on a real sqlite MLflow: a version is marked pending until it is verified
and aliased; a failure rolls it back; what a crash leaves is swept (deleted, or completed when it already
holds the alias). The same against a killed MLflow server: tests/integration/test_storage_faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from finpulse import tracking
from finpulse.config import get_settings

NAME = "finpulse-registry-test"


@pytest.fixture()
def model_dir(finpulse_home: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model_dir"
    folder.mkdir()
    (folder / "weights.json").write_text("{}")
    return folder


def _register(folder: Path, on_step=None) -> tracking.ModelRef:
    with tracking.start_run("registry-test", "train"):
        return tracking.log_model_dir(folder, registered_model_name=NAME, on_step=on_step)


class Crash(Exception):
    pass


def _crash_at(step: str):
    def hook(done: str) -> None:
        if done == step:
            raise Crash(step)
    return hook


def _versions() -> dict[str, list[str]]:
    return {v["version"]: v["aliases"] for v in tracking.model_versions(NAME)}


def test_a_whole_registration_is_verified_aliased_and_complete(model_dir: Path) -> None:
    steps: list[str] = []
    ref = _register(model_dir, steps.append)
    assert steps == list(tracking.STEPS)
    assert _versions() == {ref.version: [tracking.CHALLENGER]} and tracking.half_registered(NAME) == []
    tracking.verify_version(NAME, ref.version)
    assert tracking.download_model(f"{NAME}@challenger")[0].joinpath("weights.json").exists()


def test_a_failure_before_the_alias_moved_deletes_the_version(model_dir: Path) -> None:
    first = _register(model_dir)
    for step in ("version_created", "verified"):
        with pytest.raises(Crash):
            _register(model_dir, _crash_at(step))
    assert _versions() == {first.version: [tracking.CHALLENGER]}  # rolled back; the alias never moved


def test_a_crash_after_the_alias_moved_is_completed_by_the_sweep_not_deleted(model_dir: Path) -> None:
    _register(model_dir)
    with pytest.raises(Crash):
        _register(model_dir, _crash_at("aliased"))
    [pending] = tracking.half_registered(NAME)
    assert pending["aliases"] == [tracking.CHALLENGER]  # verified before the alias moved: serving may use it
    assert tracking.sweep_registrations(NAME) == {"deleted": [], "completed": []}  # younger than the grace
    assert tracking.sweep_registrations(NAME, older_than_s=0) == {"deleted": [], "completed": [pending["version"]]}
    assert tracking.half_registered(NAME) == [] and tracking.get_version(NAME, tracking.CHALLENGER).version == pending["version"]


def test_the_next_registration_sweeps_what_a_dead_process_left(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _register(model_dir)
    client = tracking.reaching_client(tracking.configure())
    # what a process that died right after creating the version leaves: a version marked pending, no alias
    orphan = client.create_model_version(NAME, client.get_model_version(NAME, first.version).source,
                                         tags={tracking.PENDING_TAG: "pending"})
    assert [v["version"] for v in tracking.half_registered(NAME)] == [str(orphan.version)]
    monkeypatch.setenv("FINPULSE_REGISTRATION_GRACE_S", "0")
    get_settings.cache_clear()
    latest = _register(model_dir)
    assert _versions() == {first.version: [], latest.version: [tracking.CHALLENGER]}  # the orphan is gone
