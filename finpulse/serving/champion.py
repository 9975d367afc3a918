"""The registry side of canary operations: which registry version a slot holds, moving ``champion``,
and recording who moved what, when.

Serving restarts from ``<model>@champion`` (``AppArgs``), so a promotion that moved only the running
config would be undone by the next restart. ``canary.promote`` therefore moves serving and the alias
together and records both as a run in the ``finpulse-serving`` experiment (through
:mod:`finpulse.tracking`). A canary loaded from a plain folder has no registry version to point the
alias at: promoting it is refused unless the caller says ``registry=False`` (``--no-registry``),
which moves serving only and records that the alias was left where it was.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import re
import socket
from typing import Any

log = logging.getLogger(__name__)

_NAME_VERSION = re.compile(r"^(?:models:/)?(?P<name>[^/@:]+)/(?P<version>\d+)$")
_NAME_ALIAS = re.compile(r"^(?:models:/)?(?P<name>[^/@:]+)@(?P<alias>[\w.-]+)$")


def registry_version(spec: str | None) -> tuple[str, str] | None:
    """``(name, version)`` of a registry spec: ``name/N`` and ``models:/name/N`` as given,
    ``name@alias`` resolved now; None for a folder, a ``runs:/`` URI or no spec."""
    if not spec or os.path.exists(spec):
        return None
    m = _NAME_VERSION.match(spec)
    if m:
        return m["name"], m["version"]
    m = _NAME_ALIAS.match(spec)
    if m:
        from finpulse import tracking

        ref = tracking.resolve(spec)
        return str(ref.name), str(ref.version)
    return None


def pin_spec(spec: str) -> str:
    """``name@alias`` -> ``name/N`` (the version behind the alias now); anything else unchanged.

    A canary is pinned when it is set, so a later move of ``challenger`` cannot change what the
    canary serves, or what a promotion makes champion, behind the operator's back."""
    m = _NAME_ALIAS.match(spec)
    if m is None or os.path.exists(spec):
        return spec
    name, version = registry_version(spec)  # type: ignore[misc]
    return f"{name}/{version}"


def who(actor: str | None = None) -> str:
    """The actor recorded with an event: given, else ``user@host`` of this process."""
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def not_in_registry(model: str, spec: str) -> str:
    return (f"the {model} canary {spec!r} is not a registry version, so the registry's champion alias cannot move "
            f"to it and the next restart (which serves @champion) would bring the old model back: set the canary "
            f"from a registered version (name/N or name@alias), or pass --no-registry (registry=False) to move "
            f"serving only")


def record(action: str, model: str, *, spec: str | None, actor: str | None, reason: str = "",
           parent_run_id: str | None = None, details: dict[str, Any] | None = None) -> str | None:
    """One finished run in ``finpulse-serving`` naming the action, model, version, actor and time.
    Returns its run id, or None when MLflow could not be reached (logged: bookkeeping must not block
    a rollback)."""
    from finpulse import tracking

    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    fields = {"action": action, "model": model, "spec": spec or "", "actor": who(actor), "at": when,
              "reason": reason, **(details or {})}
    tags = {f"finpulse.serving.{k}": v for k, v in fields.items() if v is not None}
    try:
        return tracking.record_event(tracking.SERVING_EXPERIMENT, f"{action}-{model}", params=fields, tags=tags,
                                     parent_run_id=parent_run_id)
    except Exception as exc:
        log.warning("could not record %s of %s in MLflow: %s", action, model, exc)
        return None


def move_champion(model: str, name: str, version: str, *, actor: str | None, reason: str = "",
                  parent_run_id: str | None = None) -> dict:
    """Point ``name@champion`` at ``version`` and record the promotion with the previous champion."""
    from finpulse import tracking

    previous = tracking.get_version(name, tracking.CHAMPION)
    tracking.set_alias(name, tracking.CHAMPION, version)
    details = {"registered_model": name, "version": version, "previous_champion": previous.version if previous
               else "", "registry_moved": True}
    run_id = record("promote", model, spec=f"{name}/{version}", actor=actor, reason=reason,
                    parent_run_id=parent_run_id, details=details)
    return {**details, "run_id": run_id}
