"""A real multi-node Ray on one machine, beside the session's ``ray_head`` and never touching it.

Each node is a ``ray start`` of its own (its own ``--temp-dir``, ports and process group), so it is stopped
by killing that group, never with ``ray stop`` (which stops every Ray on the machine, the session's
``ray_head`` included). :class:`HoldOnNode` is the forecaster's epoch callback that tells which node each
worker ran on and parks the worker on a chosen node until the test kills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, kill_group

VENV_BIN = Path(sys.executable).parent
HEALTH_CHECK_S = 0.5  # Ray Train's controller polls its workers this often (default 2 s): a dead one is seen sooner


@dataclass
class RayNode:
    """One ``ray start`` node: its temp dir names every process it started, its process group holds them."""

    temp_dir: Path
    resources: dict[str, float]
    proc: subprocess.Popen | None = None

    def wait_started(self, timeout: float = 120.0) -> None:
        """Until its ``ray start`` returned; a failed start stops what it left and raises with its output."""
        assert self.proc is not None, "not started"
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        if self.proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({self.proc.returncode}):\n{out.decode(errors='replace')[-3000:]}")

    def stop(self) -> None:
        """SIGKILL this node's processes only: its process group, then any that left it (matched by temp dir)."""
        if self.proc is not None:
            kill_group(self.proc.pid)
        for pid in pids_of(str(self.temp_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def pids_of(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a node's temp dir: its raylet, agents, workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
    return out


def node_env() -> dict[str, str]:
    """The environment a node starts with: the venv first on PATH, and no S3 credentials at all (the
    checkpoints' S3 filesystem must reach the workers inside the run config, as on a cluster's pods)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINPULSE_", "AWS_"))}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(HEALTH_CHECK_S),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}


def start_node(temp_dir: Path, resources: dict[str, float], *, head_address: str | None = None,
               head_port: int | None = None, wait: bool = True) -> RayNode:
    """``ray start`` a head (``head_port``) or a node joining ``head_address``, 1 CPU, small object store.
    ``wait=False`` returns while it starts (call :meth:`RayNode.wait_started`): a joining node can start
    while the driver imports, since Ray Train waits for the resources it needs."""
    node = RayNode(temp_dir, resources)
    args = [str(VENV_BIN / "ray"), "start", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            f"--resources={json.dumps(resources)}", f"--temp-dir={temp_dir}", "--object-store-memory=100000000",
            f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
    if head_address is None:
        args += ["--head", f"--port={head_port}", "--include-dashboard=false",
                 f"--ray-client-server-port={free_port()}"]
    else:
        args += [f"--address={head_address}"]
    node.proc = subprocess.Popen(args, env=node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    if wait:
        node.wait_started()
    return node


@dataclass(frozen=True)
class HoldOnNode:
    """After each epoch, every worker appends ``{rank, epoch, pid, node, checkpoint}`` to ``log`` (``node``: the
    custom resource that names its node; ``checkpoint``: the filesystem and path Ray Train resumed it from).
    The worker on ``node`` at the end of epoch ``epoch`` then writes its pid to ``marker`` and waits (once
    per marker) to be killed; the other rank meanwhile blocks in the next epoch's gradient all-reduce."""

    node: str
    epoch: int
    marker: str
    log: str
    node_names: tuple[str, ...] = field(default=("node_a", "node_b"))
    wait_s: float = 120.0

    def __call__(self, metrics: dict[str, Any]) -> None:
        import ray
        import ray.train

        node_id = ray.get_runtime_context().get_node_id()
        resources = next(n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id)
        here = next((name for name in self.node_names if name in resources), "?")
        ckpt = ray.train.get_checkpoint()
        line = {"rank": int(metrics["rank"]), "epoch": int(metrics["epoch"]), "pid": os.getpid(), "node": here,
                "t": time.time(),
                "checkpoint": None if ckpt is None else [ckpt.filesystem.type_name, ckpt.path]}
        with open(self.log, "a") as f:
            f.write(json.dumps(line) + "\n")
        if here != self.node or line["epoch"] != self.epoch or os.path.exists(self.marker):
            return
        Path(self.marker).write_text(f"{os.getpid()}\n")
        time.sleep(self.wait_s)  # the test SIGKILLs this process long before
        raise TimeoutError(f"worker on {here} was not killed within {self.wait_s}s")


def _ship_by_value() -> None:
    """Ray workers do not have ``tests/`` on their path: pickle this module's classes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_by_value()
