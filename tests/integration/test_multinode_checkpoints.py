"""Checkpoints on shared storage (issue 15, item 1): a worker restarted after a node's worker died resumes
from the last checkpoint on S3, not from epoch 0 and not from a folder on one node.

A real two-node Ray on this machine (two ``ray start``: a head with ``node_a`` and a second node with
``node_b``, each its own temp dir and ports; each node offers one ``trainer_slot``, and each Train worker
needs one, so the two workers always run one per node). The nodes start with no S3 credentials in their
environment: the checkpoints reach SeaweedFS only through ``FINPULSE_RAY_STORAGE_PATH`` and the S3
filesystem FinPulse builds from its settings. The real forecaster trains; at the end of epoch 1 the worker
on node_b is parked, the test reads that epoch's checkpoint back from S3 and SIGKILLs the worker.

The cluster never touches the session's ``ray_head`` (other ports, temp dirs; stopped by process group,
never ``ray stop``); the driver runs in a subprocess that joins this cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from finpulse import storage
from finpulse.forecast import model as forecast_model
from tests.support.multinode import HEALTH_CHECK_S, RayNode, node_env, start_node
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUCKET = "finpulse"
STORAGE = f"s3://{BUCKET}/ray_results"
EPOCHS, KILL_EPOCH = 4, 1


@dataclass
class TwoNodes:
    address: str  # the head's (node_a)
    joining: RayNode  # node_b, still starting when the fixture returns


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    """A head (node_a) and a second node (node_b) on 127.0.0.1, each with one ``trainer_slot``."""
    port = free_port()
    nodes: list[RayNode] = []
    try:
        nodes.append(start_node(tmp_path_factory.mktemp("mn-a"), {"node_a": 1, "trainer_slot": 1}, head_port=port))
        address = f"127.0.0.1:{port}"
        nodes.append(start_node(tmp_path_factory.mktemp("mn-b"), {"node_b": 1, "trainer_slot": 1},
                                head_address=address, wait=False))
        yield TwoNodes(address, nodes[-1])
    finally:
        for node in reversed(nodes):
            node.stop()


def _wait_for(path: Path, driver: subprocess.Popen, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended before {path.name} appeared:\n{driver.stdout.read()}")
        time.sleep(0.1)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


def _checkpoints_on_s3(until_epoch: int, timeout: float = 15.0) -> dict[str, int]:
    """``{checkpoint path on the bucket: its epoch}`` read from S3, once one of epoch ``until_epoch`` is there."""
    deadline = time.time() + timeout
    while True:
        found = {uri[len("s3://"):-len("/meta.json")]: storage.read_json(uri)["epoch"]
                 for uri in storage.list_files(STORAGE, "/meta.json")}
        if until_epoch in found.values() or time.time() > deadline:
            assert until_epoch in found.values(), f"no checkpoint of epoch {until_epoch} on S3: {found}"
            return found
        time.sleep(0.2)


def test_worker_killed_on_second_node_resumes_from_s3(two_nodes: TwoNodes, s3_server: dict, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"], aws_access_key_id=s3_server["key"],
                      aws_secret_access_key=s3_server["secret"], region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    home, marker, log = tmp_path / "home", tmp_path / "held", tmp_path / "epochs.jsonl"
    env = {**node_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "FINPULSE_HOME": str(home), "FINPULSE_RAY_ADDRESS": two_nodes.address, "FINPULSE_RAY_STORAGE_PATH": STORAGE,
           "FINPULSE_S3_ENDPOINT_URL": s3_server["endpoint"], "FINPULSE_S3_ACCESS_KEY": s3_server["key"],
           "FINPULSE_S3_SECRET_KEY": s3_server["secret"]}
    spec = {"epochs": EPOCHS, "kill_node": "node_b", "kill_epoch": KILL_EPOCH, "marker": str(marker), "log": str(log)}
    driver = subprocess.Popen([sys.executable, "-m", "tests.support.multinode_train", json.dumps(spec)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        two_nodes.joining.wait_started()  # node_b joins while the driver imports; Train waits for its slot
        held_pid = int(_wait_for(marker, driver, timeout=90))
        on_s3 = _checkpoints_on_s3(until_epoch=KILL_EPOCH)  # the parked epoch's checkpoint, read back from S3
        time.sleep(2 * HEALTH_CHECK_S + 0.5)  # the controller registers a checkpoint when it polls
        os.kill(held_pid, signal.SIGKILL)
        out, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    # every epoch ran exactly once on each node: one worker per node, and nothing ran again from epoch 0
    assert {e: sorted(x["node"] for x in lines if x["epoch"] == e) for e in range(EPOCHS)} == \
        {e: ["node_a", "node_b"] for e in range(EPOCHS)}, lines
    assert [x["epoch"] for x in lines if x["pid"] == held_pid] == list(range(KILL_EPOCH + 1))
    resumed_b = next(x for x in lines if x["node"] == "node_b" and x["epoch"] == KILL_EPOCH + 1)
    assert resumed_b["pid"] != held_pid  # a new worker on node_b, started at the epoch after the checkpoint
    assert result["resume_points"] == [KILL_EPOCH + 1]
    # the restarted group got the parked epoch's checkpoint from S3 (rank 1 reports none of its own)
    started_from = next(x["checkpoint"] for x in lines if x["epoch"] == KILL_EPOCH + 1 and x["rank"] == 1)
    assert started_from[0] == "s3" and on_s3.get(started_from[1]) == KILL_EPOCH, (started_from, on_s3)
    assert all(x["checkpoint"][0] == "s3" for x in lines if x["checkpoint"]), lines
    assert max(result["history_epochs"]) == EPOCHS - 1 and "val_loss" in result["metrics"]
    assert {forecast_model.STATE_FILE, forecast_model.META_FILE} <= set(result["model_files"])  # the model folder
    assert not (home / "ray_results").exists()  # nothing went to the pod-local default
