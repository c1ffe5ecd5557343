"""`deepeyes judge` as a user runs it: in place, into -o, resumed after kill -9, --dry-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from deepeyes_cli.agent.trajectory import ImagePart, ImageRef, append_jsonl, read_jsonl
from deepeyes_cli.rewards.synthetic import answer_turn, code_turn, make_trajectory, search_turn
from deepeyes_cli.testing.fake_openai import FakeOpenAI


def grade(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    ref = user.split("Reference answer:\n", 1)[1].split("\n\nCandidate answer:", 1)[0]
    cand = user.split("<candidate>\n", 1)[1].rsplit("\n</candidate>", 1)[0]
    time.sleep(0.05)
    return "VERDICT: " + ("CORRECT" if ref in cand else "INCORRECT")


def free_text_file(path: Path, n: int) -> None:
    """n records no rule can decide: the judge must (every third one is wrong)."""
    append_jsonl(path, [make_trajectory([answer_turn("ok", f"it is thing{i}" if i % 3 else "something else")],
                                        answer=f"thing{i}", traj_id=f"r{i}") for i in range(n)])


def test_in_place_and_output_file_with_summary(cli, tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    img = ImageRef.from_pil(Image.new("RGB", (8, 8), (200, 0, 0)), inline=True)
    first = make_trajectory([code_turn("zoom", "print(1)"), answer_turn("ok", "(B)")], answer="B", traj_id="a")
    first.sample.images = [img]
    first.messages[1].content.insert(0, ImagePart(image=img))
    append_jsonl(src, [first,
                       make_trajectory([search_turn("s", "q"), answer_turn("ok", "Paris")], answer="Paris",
                                       data_source="search", traj_id="b"),
                       make_trajectory([answer_turn("ok", "a red car")], answer="red", traj_id="c")])
    out = tmp_path / "scored" / "out.jsonl"
    with FakeOpenAI(grade, model="judge-72b") as fake:
        r = cli("judge", str(src), "--recipe", "tiny", "-o", str(out), f"reward.judge.base_url={fake.base_url}",
                f"reward.cache_path={tmp_path / 'c.sqlite'}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len(fake.requests) == 1  # only the free-text answer needed the judge
    scored = list(read_jsonl(out))
    assert [t.reward["score"] for t in scored] == [1.0, 0.92, 1.0]
    assert [t.reward["decided_by"] for t in scored] == ["rule", "rule", "judge"]
    assert scored[0].sample.images[0].load(out.parent).size == (8, 8)  # image paths follow the new directory
    assert all(t.reward is None for t in read_jsonl(src))  # -o leaves the input alone
    assert "perception" in r.stdout and "search" in r.stdout and "judge 1" in r.stdout
    assert "cache hits 0" in r.stdout and not list(tmp_path.glob("scored/*.judging.jsonl"))
    summary = json.loads(next(tmp_path.glob("runs/*/judge_summary.json")).read_text())
    assert summary["by_source"]["perception"]["accuracy"] == 1.0 and summary["judge_calls"] == 1

    # In place, rules only: nothing to ask, the free-text record stays unjudged and is reported.
    r = cli("judge", str(src), "--recipe", "tiny", cwd=tmp_path)
    assert r.returncode == 0 and "1 records are unjudged" in r.stderr
    rewards = [t.reward for t in read_jsonl(src)]
    assert rewards[2]["unjudged"] and rewards[2]["score"] is None and rewards[0]["score"] == 1.0


def test_resumes_after_kill_minus_9_without_losing_or_rescoring(cli, tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    n = 40
    free_text_file(src, n)
    before = src.read_bytes()
    journal = tmp_path / "traj.jsonl.judging.jsonl"
    with FakeOpenAI(grade) as fake:
        args = [sys.executable, "-m", "deepeyes_cli", "judge", str(src), "--recipe", "tiny",
                f"reward.judge.base_url={fake.base_url}", "reward.judge.concurrency=2",
                f"reward.cache_path={tmp_path / 'c.sqlite'}"]
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 8):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert src.read_bytes() == before  # the input is untouched until the end
        done_ids = {json.loads(line)["id"] for line in journal.read_text().splitlines(keepends=True)
                    if line.endswith("\n")}
        assert 8 <= len(done_ids) < n
        asked_before = len(fake.requests)

        r = cli("judge", str(src), "--recipe", "tiny", f"reward.judge.base_url={fake.base_url}",
                f"reward.cache_path={tmp_path / 'c.sqlite'}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        asked_after = [req["messages"][-1]["content"] for req in fake.requests[asked_before:]]
    assert f"{len(done_ids)} resumed" in r.stdout
    # Journaled records were not asked again; only the rest were (those in flight at the kill included).
    assert not any(f"Reference answer:\nthing{i[1:]}\n" in m for i in done_ids for m in asked_after)
    assert 0 < len(asked_after) <= n - len(done_ids)
    scored = list(read_jsonl(src))
    assert [t.id for t in scored] == [f"r{i}" for i in range(n)]  # nothing lost, nothing doubled
    assert [t.reward["accuracy"] for t in scored] == [0.0 if i % 3 == 0 else 1.0 for i in range(n)]
    assert not journal.exists()

    r = cli("judge", str(src), "--recipe", "tiny", cwd=tmp_path)  # already scored: kept as is
    assert r.returncode == 0 and f"{n} kept" in r.stdout


def test_dry_run_and_missing_file(cli, tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    free_text_file(src, 2)
    before = src.read_bytes()
    r = cli("judge", str(src), "--recipe", "tiny", "reward.judge.base_url=http://127.0.0.1:9/v1", "--dry-run",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "would run" in r.stdout and "judge (first model listed) at http://127.0.0.1:9/v1" in r.stdout
    assert "score = 0.8·acc·(1 − p) + 0.2·format, p = 0.1" in r.stdout
    assert src.read_bytes() == before and not (tmp_path / "runs").exists()
    r = cli("judge", str(tmp_path / "nope.jsonl"), "--recipe", "tiny", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: no such trajectory file")
