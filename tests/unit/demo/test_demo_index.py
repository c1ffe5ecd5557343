"""The demo's index page shows the run's own figures, read from the stages' outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "demo_index", Path(__file__).resolve().parents[3] / "scripts" / "demo" / "demo_index.py")
assert SPEC and SPEC.loader
demo_index = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(demo_index)


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(tmp_path: Path) -> Path:
    out = tmp_path / "demo"
    _lines(out / "data/export/sft.jsonl", [{"id": i} for i in range(5)])
    _lines(out / "data/export/rl.jsonl", [{"id": i} for i in range(3)])
    _lines(out / "data/export/val.jsonl", [{"id": 0}])
    (out / "data/report.html").write_text("<html>")
    _write(out / "valid_before.json", {"valid": 0, "n": 20, "rate": 0.0})
    _write(out / "valid_after.json", {"valid": 19, "n": 20, "rate": 0.95})
    _lines(out / "sft/metrics.jsonl", [{"step": 1, "loss": 4.5}, {"step": 2, "loss": 0.25}])
    # step 2 logged twice (a resume): the last line wins
    _lines(out / "rl/metrics.jsonl", [{"step": 1, "rollout/reward": 0.25}, {"step": 2, "rollout/reward": 0.1},
                                      {"step": 2, "rollout/reward": 0.5}, {"step": 3, "rollout/reward": 0.75}])
    _write(out / "bench-base/summary.json", {"heldout": {"headline": {"value": 12.5}}})
    _write(out / "bench-trained/summary.json", {"heldout": {"headline": {"value": 37.5}}})
    _write(out / "serve.json", {"question": "q?", "answer": "STOP", "seconds": 1.5})
    _lines(out / "timings.jsonl", [{"step": "curate", "seconds": 12}])
    return out


def test_index_reads_every_figure_from_the_run(tmp_path: Path) -> None:
    out = _run(tmp_path)
    h = demo_index.write_index(out)
    assert h["protocol_valid"]["before"] == 0.0 and h["protocol_valid"]["after"] == 0.95
    assert h["sft"] == {"steps": 2, "loss_first": 4.5, "loss_last": 0.25}
    assert h["rl"]["curve"] == [0.25, 0.5, 0.75]
    assert (h["rl"]["reward_first"], h["rl"]["reward_last"]) == (0.25, 0.75)
    assert (h["bench"]["base"], h["bench"]["trained"]) == (12.5, 37.5)
    assert h["curate"]["sft_trajectories"] == 5 and h["curate"]["rl_questions"] == 3
    page = (out / "index.html").read_text()
    assert "0% (0/20) → 95% (19/20)" in page
    assert "12.5 vs 37.5" in page
    assert 'href="data/report.html"' in page
    assert 'href="rl/report.md"' not in page and "(not written)" in page  # no rl report in this fake run
    assert json.loads((out / "headline.json").read_text())["serve"]["answer"] == "STOP"


def test_a_missing_stage_output_is_an_error_not_a_made_up_figure(tmp_path: Path) -> None:
    out = _run(tmp_path)
    (out / "bench-trained/summary.json").unlink()
    with pytest.raises(demo_index.DemoOutputError, match="bench-trained"):
        demo_index.write_index(out)
    assert not (out / "index.html").exists()


def test_rl_metrics_without_rewards_are_rejected(tmp_path: Path) -> None:
    out = _run(tmp_path)
    _lines(out / "rl/metrics.jsonl", [{"step": 1, "actor/entropy": 1.0}])
    with pytest.raises(demo_index.DemoOutputError, match="rollout/reward"):
        demo_index.write_index(out)
