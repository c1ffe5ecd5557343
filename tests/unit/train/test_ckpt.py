"""Checkpoint directory mechanics: atomic publish, `latest`, keep-K, leftovers of a kill."""

from __future__ import annotations

import json
import random
from pathlib import Path

from deepeyes_cli.train.ckpt import Checkpointer
from deepeyes_cli.train.engine import DistInfo


class FileEngine:
    """The smallest engine: its whole state is one number in a file."""

    def __init__(self) -> None:
        self.value = 0

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "value").write_text(str(self.value))

    def load(self, directory: Path) -> None:
        self.value = int((directory / "value").read_text())


def test_save_keeps_the_last_k_and_points_latest(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path / "ckpt", DistInfo(), keep=2)
    engine = FileEngine()
    for step in (2, 4, 6):
        engine.value = step * 10
        ck.save(engine, step, {"epoch": 0, "cursor": step})
    assert [p.name for p in ck.complete()] == ["step-000004", "step-000006"]
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step-000006"
    fresh = FileEngine()
    state = ck.load(fresh, ck.latest())
    assert fresh.value == 60 and state["cursor"] == 6 and state["step"] == 6
    random.seed(0)
    ck.load(fresh, ck.latest())
    after_load = random.random()
    ck.load(fresh, ck.latest())
    assert random.random() == after_load  # the saved python RNG state, not whatever ran before


def test_a_killed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    ck = Checkpointer(root, DistInfo(), keep=3)
    engine = FileEngine()
    engine.value = 7
    ck.save(engine, 2, {"epoch": 0, "cursor": 2})
    # a save killed half-way: its temporary directory, no client state, latest untouched
    (root / ".tmp-step-000004" / "engine").mkdir(parents=True)
    (root / "step-000005").mkdir()  # renamed without client_state.json can never happen; ignored anyway
    assert ck.latest() == root / "step-000002"
    (root / "latest").unlink()  # pointer lost: the newest complete checkpoint is found
    assert ck.latest() == root / "step-000002"
    engine.value = 9
    ck.save(engine, 4, {"epoch": 0, "cursor": 4})  # the leftover is replaced
    assert not (root / ".tmp-step-000004").exists()
    assert json.loads((root / "step-000004" / "client_state.json").read_text())["cursor"] == 4
