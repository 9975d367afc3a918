"""The step runner in one process: keys, failures, changed inputs, decisions, stop, finish, abandonment."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from finpulse import tracking
from finpulse.loop.records import step_key, turns_root
from finpulse.loop.steps import Turn, TurnStopped
from finpulse.names import PIPELINE_EXPERIMENT


def children(turn: Turn) -> list:
    client = MlflowClient(tracking.configure())
    exp = client.get_experiment_by_name(PIPELINE_EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{turn.parent_run_id}'")


def chain(turn: Turn, log: list[str], config: dict[str, int], fail: set[str] = frozenset()) -> dict[str, object]:
    """s0 -> s1 -> ... -> s6; s3 also takes config['s3']; s5 depends on s1 only (not on s3)."""
    def work(name: str, inputs: dict) -> Callable[[], dict]:
        def fn() -> dict:
            log.append(name)
            if name in fail:
                raise RuntimeError(f"{name} broke")
            return {"version": step_key(name, inputs)[:8]}
        return fn

    out: dict[str, object] = {}
    upstream = "curated-v1"
    for i in range(7):
        name = f"s{i}"
        inputs = {"upstream": out["s1"].outputs["version"]} if name == "s5" else {"upstream": upstream}
        if name == "s3":
            inputs["config"] = config["s3"]
        out[name] = result = turn.step(name, inputs, work(name, inputs))
        if name != "s5":
            upstream = result.outputs["version"]
    return out


def test_step_keys_are_stable_and_need_json_inputs() -> None:
    assert step_key("train", {"a": 1, "b": "x"}) == step_key("train", {"b": "x", "a": 1})
    assert step_key("train", {"a": 1}) != step_key("score", {"a": 1}) != step_key("score", {"a": 2})
    with pytest.raises(TypeError):
        step_key("train", {"model": object()})


def test_failing_step_is_redone_on_rerun_and_nothing_before_it(finpulse_home: Path) -> None:
    root, log = turns_root(finpulse_home), []
    turn = Turn.start(root, "schedule")
    with pytest.raises(RuntimeError, match="s2 broke"):
        chain(turn, log, {"s3": 1}, fail={"s2"})
    failed = json.loads(next((turn.folder / "steps").glob("s2.*.json")).read_text())
    assert failed["status"] == "failed" and "s2 broke" in failed["error"] and "Traceback" in failed["traceback"]

    again = Turn.resume_or_start(root, "schedule")
    assert again.turn_id == turn.turn_id and again.attempt == 2
    out = chain(again, log, {"s3": 1})
    assert log == ["s0", "s1", "s2", "s2", "s3", "s4", "s5", "s6"]
    assert [out[s].cached for s in ("s0", "s1")] == [True, True] and not out["s2"].cached and out["s2"].redone
    summary = again.summary()
    assert [summary[k] for k in ("ran", "reused", "redone", "failed", "redone_total")] == [5, 2, 1, 0, 1]
    statuses = sorted((c.data.tags["finpulse.step"], c.info.status) for c in children(again))
    assert ("s2", "FAILED") in statuses and ("s2", "FINISHED") in statuses and len(statuses) == 8
    failed_child = next(c for c in children(again) if c.info.status == "FAILED")
    assert "s2 broke" in failed_child.data.tags["finpulse.error"]


def test_changed_inputs_rerun_the_steps_that_depend_on_them(finpulse_home: Path) -> None:
    root, log = turns_root(finpulse_home), []
    first = chain(Turn.start(root, "schedule"), log, {"s3": 1})
    log.clear()
    turn = Turn.resume_or_start(root, "drift", reason="psi 0.4")
    second = chain(turn, log, {"s3": 2})
    assert log == ["s3", "s4", "s6"]  # s5 depends on s1 only: its key did not change
    assert [second[s].cached for s in ("s0", "s1", "s2", "s5")] == [True] * 4
    assert second["s3"].key != first["s3"].key and second["s4"].key != first["s4"].key
    assert not any(r.redone for r in second.values())  # new inputs are new work, not redone work
    log.clear()
    back = chain(turn, log, {"s3": 1})  # back to the first config: its records are still there
    assert log == [] and all(r.cached for r in back.values())


def test_decisions_are_recorded_on_the_child_run(finpulse_home: Path) -> None:
    turn = Turn.start(turns_root(finpulse_home), "schedule")
    gate = turn.step("gate", {"challenger": "3", "champion": "2"},
                     lambda: {"decision": "reject", "reasons": ["mae 0.031 > champion 0.029"], "mae": 0.031})
    assert gate.decision == "reject" and gate.reasons == ["mae 0.031 > champion 0.029"]
    record = turn.finish("rejected", reasons=gate.reasons)
    assert record["status"] == "finished" and record["outcome"] == "rejected"
    (child,) = children(turn)
    assert child.data.tags["finpulse.decision"] == "reject"
    assert json.loads(child.data.tags["finpulse.reasons"]) == ["mae 0.031 > champion 0.029"]
    assert child.data.params == {"input.challenger": "3", "input.champion": "2"}
    assert child.data.metrics["output.mae"] == 0.031 and child.data.metrics["duration_s"] >= 0
    parent = MlflowClient(tracking.configure()).get_run(turn.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["finpulse.outcome"] == "rejected"
    assert parent.data.tags["finpulse.trigger"] == "schedule"


def test_finished_turn_is_never_resumed(finpulse_home: Path) -> None:
    root = turns_root(finpulse_home)
    done = Turn.start(root, "schedule")
    done.step("a", {}, lambda: {})
    done.finish("no_change")
    with pytest.raises(RuntimeError, match="finished"):
        done.step("b", {}, lambda: {})
    calls = []
    fresh = Turn.resume_or_start(root, "schedule")
    assert fresh.turn_id != done.turn_id and fresh.attempt == 1
    assert not fresh.step("a", {}, lambda: calls.append(1) or {}).cached and calls == [1]


def test_stop_halts_before_the_next_step_and_the_turn_resumes(finpulse_home: Path) -> None:
    root, stop, calls = turns_root(finpulse_home), threading.Event(), []
    turn = Turn.start(root, "schedule", stop=stop)
    turn.step("a", {}, lambda: calls.append("a") or {})
    stop.set()
    with pytest.raises(TurnStopped):
        turn.step("b", {}, lambda: calls.append("b") or {})
    assert calls == ["a"] and not turn.finished
    resumed = Turn.resume_or_start(root, "schedule")
    assert resumed.turn_id == turn.turn_id
    assert resumed.step("a", {}, lambda: calls.append("a") or {}).cached
    resumed.step("b", {}, lambda: calls.append("b") or {})
    assert calls == ["a", "b"]


def test_a_turn_that_keeps_failing_is_abandoned_after_max_attempts(finpulse_home: Path) -> None:
    root = turns_root(finpulse_home)

    def broken() -> dict:
        raise ValueError("no curated data")

    ids = []
    for _ in range(3):
        turn = Turn.resume_or_start(root, "schedule", max_attempts=3)
        ids.append(turn.turn_id)
        with pytest.raises(ValueError):
            turn.step("etl", {}, broken)
    assert len(set(ids)) == 1
    fresh = Turn.resume_or_start(root, "schedule", max_attempts=3)
    assert fresh.turn_id != ids[0]
    old = Turn.load(root, ids[0])
    assert old.finished and old.outcome == "abandoned"
    assert "no curated data" in json.loads((old.folder / "turn.json").read_text())["reasons"][0]
    assert MlflowClient(tracking.configure()).get_run(old.parent_run_id).info.status == "FAILED"


def test_outputs_must_be_a_json_dict(finpulse_home: Path) -> None:
    turn = Turn.start(turns_root(finpulse_home), "schedule")
    with pytest.raises(TypeError):
        turn.step("bad", {}, lambda: None)
    with pytest.raises(TypeError):
        turn.step("worse", {}, lambda: {"model": object()})
