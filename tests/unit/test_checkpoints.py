"""The checkpoint contract: state dicts restore without unpickling code; meta is plain JSON."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from finpulse import checkpoints


def test_round_trip_keeps_weights_and_meta(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    checkpoints.write(tmp_path, {"model": net.state_dict(), "optimizer": opt.state_dict()},
                      {"epoch": 4, "history": [{"val_loss": 0.5}]})
    state, meta = checkpoints.read(tmp_path)
    assert meta == {"epoch": 4, "history": [{"val_loss": 0.5}]}
    assert json.loads((tmp_path / checkpoints.META_FILE).read_text())["epoch"] == 4
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(state["model"])
    assert torch.equal(fresh.weight, net.weight)


class _Evil:
    def __reduce__(self):  # what a pickled object could do on load
        return (exec, ("raise SystemExit('code ran')",))


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    torch.save({"stopper": _Evil()}, tmp_path / checkpoints.STATE_FILE)
    (tmp_path / checkpoints.META_FILE).write_text("{}")
    with pytest.raises(pickle.UnpicklingError):
        checkpoints.read(tmp_path)
