"""The one place FinPulse joins or starts Ray, quiets library logging, and keeps Ctrl-C working.

Entry points (the demo, the CLI, jobs) call :func:`connect`; library functions assume Ray is up
and call it only as a fallback. Library logs (Ray, Ray Data/Train/Tune/Serve, MLflow, transformers,
Python warnings) go to ``<home>/logs/finpulse.log`` so a terminal shows FinPulse's own progress
and results, not a log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finpulse.config import Settings, get_settings, settings_env

QUIET_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve", "mlflow", "transformers", "urllib3",
                 "filelock", "alembic", "py.warnings", "torch", "fsspec", "s3fs", "botocore", "aiobotocore")
# Library chatter that is not set through a logger: progress bars and verbosity switches.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TRANSFORMERS_VERBOSITY": "error",
             "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_log_file: Path | None = None


def log_file(settings: Settings | None = None) -> Path:
    """Where library logs go: ``<home>/logs/finpulse.log``."""
    return Path((settings or get_settings()).home) / "logs" / "finpulse.log"


def quiet_libraries(settings: Settings | None = None) -> Path:
    """Send the libraries' log records and warnings to the log file instead of the terminal."""
    global _log_file
    path = log_file(settings)
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    if _log_file == path:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
    _log_file = path
    return path


def stderr_to_log(settings: Settings | None = None) -> Path:
    """Point this process's standard error (fd 2) at the log file; FinPulse's own output stays on stdout.

    Libraries configure console handlers lazily (Ray Data on first execution, Serve on start, MLflow
    on import) and Ray's C++ core writes to fd 2 directly, so per-logger settings alone leave a
    terminal full of INFO lines. Commands a person runs (the demo, long CLI commands) call this.
    """
    path = quiet_libraries(settings)
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return path


def _job_env_vars() -> dict[str, str]:
    """Environment variables the submitted job's runtime_env already sets (Ray refuses to merge clashes)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    with contextlib.suppress(ValueError, AttributeError):
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    return {}


def connect(settings: Settings | None = None, *, address: str | None = None, quiet: bool = True,
            **local_kwargs: Any) -> Any:
    """Join ``settings.ray_address``, the job's cluster under ``ray job submit``, or start a fresh local Ray.

    A bare ``ray.init()`` would join the cluster a past ``ray start`` recorded on this machine (and hang
    when it is gone), so with no address configured and no job around, FinPulse asks for ``"local"``.
    Workers get this process's resolved (absolute) settings in their environment. ``local_kwargs``
    (dashboard options, CPUs) apply only when this call starts the local Ray.
    """
    import ray

    s = settings or get_settings()
    if quiet:
        quiet_libraries(s)
    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or s.ray_address or (None if os.environ.get("RAY_ADDRESS") else "local")
    taken = _job_env_vars()
    env = {k: v for k, v in settings_env(s).items() if k not in taken}
    if address == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ctx = ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env} if env else None,
                   **(local_kwargs if address == "local" else {}))
    if quiet:
        quiet_libraries(s)  # ray.init installs its own console handlers: send them to the file again
        import ray.data

        data_ctx = ray.data.DataContext.get_current()
        data_ctx.enable_progress_bars = False  # FinPulse draws one bar per stage itself
        data_ctx.enable_operator_progress_bars = False
    return ctx


@contextlib.contextmanager
def sigint_restored() -> Iterator[None]:
    """Restore this process's SIGINT handler after the block.

    Ray Train installs a handler in the driver ("Gracefully aborting the training run") that outlives
    ``fit()``: a driver that trains and then serves would ignore Ctrl-C without this.
    """
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: nothing to restore
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, previous)


# ---- GPU requests: fail fast where the cluster has none (issue 12) --------------------------------

class GpuUnavailable(RuntimeError):
    """A run asked for GPUs the Ray cluster does not have (and did not get within the wait)."""


def require_gpus(needed: float, what: str, *, wait_s: float = 0.0, poll_s: float = 2.0) -> float:
    """Check the cluster has ``needed`` GPUs before a run asks Ray for them, so it fails at once with a
    clear message instead of pending forever. ``wait_s`` > 0 (an autoscaling cluster whose GPU group
    starts at zero, e.g. KubeRay) first asks the autoscaler for them (``request_resources``) and waits that
    long. Returns the cluster's GPU count; 0 needed is always fine."""
    import time

    import ray
    from ray.autoscaler.sdk import request_resources

    if needed <= 0:
        return float(ray.cluster_resources().get("GPU", 0.0))
    deadline = time.monotonic() + max(0.0, wait_s)
    if wait_s > 0:
        request_resources(bundles=[{"GPU": 1}] * max(1, int(-(-needed // 1))))
    try:
        while True:
            have = float(ray.cluster_resources().get("GPU", 0.0))
            if have >= needed:
                return have
            if time.monotonic() >= deadline:
                break
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    finally:
        if wait_s > 0:
            request_resources(bundles=[])  # the request stays until cleared; the run's own demand holds the nodes
    raise GpuUnavailable(
        f"{what} asks for {needed:g} GPU(s) but the Ray cluster has {have:g}"
        + (f" after waiting {wait_s:g}s for the autoscaler" if wait_s > 0 else "")
        + ". Run on a cluster with a GPU worker group (cluster/base/ray/raycluster.yaml, group `gpu`; "
        "pass a GPU wait there so the autoscaler can add one), or drop the GPU option to run on CPU.")
