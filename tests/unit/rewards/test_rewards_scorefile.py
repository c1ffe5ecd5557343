"""`judge_file` edge cases: interrupted runs and their settings, a writer still appending,
unreadable input, an unwritable output. Rules only (no judge), so every run is in-process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from deepeyes_cli.agent.trajectory import append_jsonl, read_jsonl
from deepeyes_cli.errors import InputError
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.rewards.reward import RewardScorer
from deepeyes_cli.rewards.scorefile import journal_path, judge_file
from deepeyes_cli.rewards.synthetic import answer_turn, make_trajectory


def letters_file(path: Path, n: int) -> None:
    """n records a rule decides: even ones right (B), odd ones wrong (C)."""
    append_jsonl(path, [make_trajectory([answer_turn("ok", "B" if i % 2 == 0 else "C")], answer="B", traj_id=f"r{i}")
                        for i in range(n)])


def stop_after(k: int):
    def on_progress(done: int, total: int) -> None:
        if done >= k:
            raise KeyboardInterrupt  # as Ctrl-C would, after k records are journaled

    return on_progress


def test_an_interrupted_run_resumes_with_the_same_settings(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 10)
    before = src.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        judge_file(RewardScorer(RewardConfig()), src, on_progress=stop_after(4))
    assert src.read_bytes() == before and len(journal_path(src).read_text().splitlines()) == 4
    summary = judge_file(RewardScorer(RewardConfig()), src)
    assert (summary.resumed, summary.scored_now) == (4, 6)
    assert [t.reward["score"] for t in read_jsonl(src)] == [1.0, 0.2] * 5
    assert not journal_path(src).exists()


def test_an_interrupted_run_with_other_weights_scores_everything_again(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 10)
    with pytest.raises(KeyboardInterrupt):
        judge_file(RewardScorer(RewardConfig()), src, on_progress=stop_after(4))
    # Weights changed before the re-run: the journaled verdicts are stale.
    summary = judge_file(RewardScorer(RewardConfig(accuracy_weight=0.5, format_weight=0.5)), src)
    assert (summary.resumed, summary.scored_now) == (0, 10)
    assert [t.reward["score"] for t in read_jsonl(src)] == [1.0, 0.5] * 5


def test_in_place_scoring_stops_when_the_input_grows_meanwhile(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 6)

    def writer_appends(done: int, total: int) -> None:
        if done == 3:  # an agent loop still appending rollouts to the file
            append_jsonl(src, [make_trajectory([answer_turn("ok", "B")], answer="B", traj_id="late")])

    with pytest.raises(InputError, match="changed while it was being scored"):
        judge_file(RewardScorer(RewardConfig()), src, on_progress=writer_appends)
    assert [t.id for t in read_jsonl(src)][-1] == "late"  # nothing dropped
    summary = judge_file(RewardScorer(RewardConfig()), src)  # the writer is done: finish
    assert summary.resumed == 6 and summary.scored_now == 1
    assert [t.reward is not None for t in read_jsonl(src)] == [True] * 7


def test_in_place_keeps_the_file_mode(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 2)
    os.chmod(src, 0o640)
    judge_file(RewardScorer(RewardConfig()), src)
    assert stat.S_IMODE(src.stat().st_mode) == 0o640


@pytest.mark.parametrize(("content", "message"), [
    (b"[1, 2]\n", "t.jsonl:1: not a trajectory record"),
    (b'{"id": "x"}\n', "sample: Field required"),
    (b"\xff\xfe\x00garbage\n", "not UTF-8"),
])
def test_unreadable_input_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    src = tmp_path / "t.jsonl"
    src.write_bytes(content)
    with pytest.raises(InputError) as e:
        judge_file(RewardScorer(RewardConfig()), src)
    assert message in e.value.message and "\n" not in e.value.message
    assert src.read_bytes() == content


def test_an_output_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 1)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot write"):
        judge_file(RewardScorer(RewardConfig()), src, blocker / "out.jsonl")  # a file where a directory should be


def test_journal_lines_name_their_settings(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    letters_file(src, 3)
    with pytest.raises(KeyboardInterrupt):
        judge_file(RewardScorer(RewardConfig()), src, on_progress=stop_after(2))
    entries = [json.loads(line) for line in journal_path(src).read_text().splitlines()]
    assert {e["config"] for e in entries} == {entries[0]["config"]} and len(entries[0]["config"]) == 12
    # Settings that only change how the judge is reached keep the journal valid.
    cfg = RewardConfig.model_validate({"judge": {"concurrency": 3, "timeout_s": 5, "base_url": "http://x:1/v1"}})
    assert judge_file(RewardScorer(cfg), src).resumed == 2
