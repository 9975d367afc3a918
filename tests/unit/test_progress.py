"""Progress bars report what happened: the polled bar ends at the final count, the sink sends numbers only."""

from __future__ import annotations

import time

from finpulse.progress import EpochSink, polled_bar, stage_bar


def test_polled_bar_follows_and_ends_at_the_count(capsys) -> None:
    state = {"n": 0}
    with polled_bar("rows", 10, lambda: state["n"], every_s=0.05):
        for i in range(1, 8):
            state["n"] = i
            time.sleep(0.06)
        state["n"] = 10
    out = capsys.readouterr().out
    assert "100%" in out and "rows" in out


def test_stage_bar_names_each_finished_stage(capsys) -> None:
    bar, done = stage_bar("ETL", ["a", "b"])
    done("a")
    done("b")
    bar.close()
    out = capsys.readouterr().out
    assert "2/2" in out and "b" in out


class _ListQueue:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def put_nowait(self, item: dict) -> None:
        self.items.append(item)


def test_epoch_sink_sends_numbers_and_never_raises() -> None:
    q = _ListQueue()
    sink = EpochSink(q)
    sink({"epoch": 1, "val_loss": 0.5, "history": [1, 2], "val_confusion_matrix": [[1]]})
    assert q.items == [{"epoch": 1, "val_loss": 0.5}]
    EpochSink(None)({"epoch": 2})  # a broken queue must not fail training
