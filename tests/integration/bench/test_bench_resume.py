"""kill -9 in the middle of a bench run, then the same command: finished items are never
asked again, the torn tail is repaired, and the report covers every item. The policy is a
real OpenAI-compatible HTTP server (the fake) so asks are counted at the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from deepeyes_cli.testing.fake_openai import FakeOpenAI, Reply


def _prompt(body: dict[str, Any]) -> str:
    user = next(m for m in body["messages"] if m["role"] == "user")
    content = user["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.mark.slow
def test_kill_minus_9_then_resume_never_asks_a_finished_item(tmp_path: Path) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        return Reply("<think>ok</think>\n<answer>A</answer>", delay_s=0.4)

    run_dir = tmp_path / "run"
    batch = run_dir / "mini-no-tools" / "batch"

    def written() -> list[str]:
        return [x for shard in sorted(batch.glob("shard-*.jsonl")) for x in shard.read_text().splitlines()]

    with FakeOpenAI(answer, model="m") as fake:
        args = [sys.executable, "-m", "deepeyes_cli", "bench", "mini", "-r", "tiny", "--url", fake.base_url,
                "--tools", "off", "--concurrency", "2", "--run-dir", str(run_dir), "bench.viewer=false"]
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(written()) < 3:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = {json.loads(x)["sample"]["id"] for x in written()}
        with open(sorted(batch.glob("shard-*.jsonl"))[-1], "a") as f:  # as if killed in the middle of a line
            f.write('{"id": "torn')
        assert 3 <= len(finished) < 8
        asked_before = Counter(_prompt(r) for r in fake.requests)

        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        asked = Counter(_prompt(r) for r in fake.requests)
    results = [json.loads(x) for x in (run_dir / "mini-no-tools" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 8 and all(x["score"] is not None for x in results)
    prompts = {}
    for line in written():
        try:
            rec = json.loads(line)
        except ValueError:
            assert line == '{"id": "torn'  # the torn line stays where it was, ignored
            continue
        prompts.setdefault(rec["sample"]["id"], []).append(rec)
    assert all(len(v) == 1 for v in prompts.values()) and len(prompts) == 8  # one trajectory per item
    for item_id in finished:  # a finished item's question went over the wire once, in the first run
        question = prompts[item_id][0]["sample"]["question"]
        hits = [p for p in asked if question.strip() in p]
        assert len(hits) == 1 and asked[hits[0]] == 1 and asked_before[hits[0]] == 1
    assert sum(asked.values()) <= 8 + 2  # at most the two in flight at the kill were asked twice
    summary = json.loads((run_dir / "mini-no-tools" / "summary.json").read_text())
    assert summary["items"] == 8 and summary["headline"]["value"] == 25.0
