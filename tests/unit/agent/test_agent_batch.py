"""The batch runner: k attempts per sample, concurrent, scored, resumable after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepeyes_cli.agent.batch import canonical, read_batch, run_batch_sync
from deepeyes_cli.errors import InputError

REPO = Path(__file__).resolve().parents[3]

RUNNER = textwrap.dedent("""
    import asyncio, hashlib, sys
    from deepeyes_cli.agent.batch import run_batch_sync
    from deepeyes_cli.agent.config import AgentConfig
    from deepeyes_cli.agent.loop import AgentRuntime
    from deepeyes_cli.agent.trajectory import Sample
    from deepeyes_cli.policy.base import Completion

    class SeededPolicy:
        '''Answers a digest of (question, seed): deterministic per attempt, different across attempts.'''
        name = "seeded"
        model_name = "seeded"
        def __init__(self, delay):
            self.delay = delay
        async def generate(self, convs, params):
            await asyncio.sleep(self.delay)
            out = []
            for c in convs:
                q = "".join(p for p in c.messages[-1].content if isinstance(p, str))
                d = int(hashlib.sha256(f"{q}|{params.seed}".encode()).hexdigest(), 16) % 3
                out.append(Completion(f"<think>guess</think>\\n<answer>{d}</answer>", "stop",
                                      metadata={"completion_tokens": 7}, prompt_tokens=11))
            return out
        async def aclose(self):
            return None

    def runtime(delay, concurrency):
        cfg = AgentConfig(max_turns=2, concurrency=concurrency, temperature=1.0, tools=[])
        return AgentRuntime(SeededPolicy(delay), {}, cfg, "You answer.", "Answer in <answer>.")

    def samples(n):
        return [Sample(id=f"q{i}", question=f"What is {i} mod 3?", answer=str(i % 3), data_source="reason")
                for i in range(n)]

    if __name__ == "__main__":
        out, n, k, delay, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        s = run_batch_sync(runtime(delay, conc), samples(n), out, k=k, seed=7, tag="t", shard_size=7)
        print(s.done, s.resumed, s.ran)
""")


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    path = tmp_path / "runner.py"
    path.write_text(RUNNER)
    return path


def _load(runner: Path):  # the runner's helpers, imported in this process
    import importlib.util

    spec = importlib.util.spec_from_file_location("batch_runner", runner)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lines(out: Path) -> int:
    return sum(p.read_text().count("\n") for p in out.glob("shard-*.jsonl"))


def test_k_attempts_each_once_in_order_with_distinct_seeds(runner: Path, tmp_path: Path) -> None:
    mod = _load(runner)
    progress: list[tuple[int, int, float]] = []
    s = run_batch_sync(mod.runtime(0.0, 4), mod.samples(5), tmp_path / "b", k=3, seed=1,
                       on_progress=lambda d, t, c: progress.append((d, t, c)),
                       cost_of=lambda t: 0.5)
    assert (s.total, s.done, s.ran, s.resumed) == (15, 15, 15, 0)
    assert s.complete and s.cost_usd == pytest.approx(7.5)
    assert progress[-1] == (15, 15, 7.5)
    trajs = read_batch(tmp_path / "b")
    assert [(t.metadata["batch"]["index"], t.metadata["batch"]["attempt"]) for t in trajs] == \
        [(i, a) for i in range(5) for a in range(3)]
    assert len({t.id for t in trajs}) == 15
    # attempts of one question are sampled with different seeds: not all answers equal
    answers = {i: {t.final_answer for t in trajs if t.metadata["batch"]["index"] == i} for i in range(5)}
    assert any(len(v) > 1 for v in answers.values())
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["records"] == 15
    # a rerun finds everything done and runs nothing
    again = run_batch_sync(mod.runtime(0.0, 4), mod.samples(5), tmp_path / "b", k=3, seed=1)
    assert (again.ran, again.resumed) == (0, 15)
    assert len(read_batch(tmp_path / "b")) == 15


def test_another_plan_in_the_same_directory_is_refused(runner: Path, tmp_path: Path) -> None:
    mod = _load(runner)
    run_batch_sync(mod.runtime(0.0, 2), mod.samples(2), tmp_path / "b", k=1)
    with pytest.raises(InputError, match="another batch"):
        run_batch_sync(mod.runtime(0.0, 2), mod.samples(2), tmp_path / "b", k=2)


def test_scorer_rewards_each_record(runner: Path, tmp_path: Path) -> None:
    from deepeyes_cli.rewards.config import RewardConfig
    from deepeyes_cli.rewards.reward import RewardScorer

    mod = _load(runner)
    s = run_batch_sync(mod.runtime(0.0, 2), mod.samples(6), tmp_path / "b", k=2, seed=3,
                       scorer=RewardScorer(RewardConfig(matching="rules")))
    trajs = read_batch(tmp_path / "b")
    correct = sum(t.reward["accuracy"] == 1.0 for t in trajs if t.reward)
    assert all(t.reward is not None and t.reward["decided_by"] == "rule" for t in trajs)
    assert s.correct == correct
    assert correct == sum(t.final_answer == t.sample.answer for t in trajs)


def test_should_stop_lets_in_flight_finish_and_a_rerun_goes_on(runner: Path, tmp_path: Path) -> None:
    mod = _load(runner)
    calls = {"n": 0}

    def stop() -> str | None:
        calls["n"] += 1
        return "budget" if calls["n"] > 4 else None

    s = run_batch_sync(mod.runtime(0.0, 2), mod.samples(10), tmp_path / "b", k=1, should_stop=stop)
    assert s.stopped == "budget" and not s.complete and 4 <= s.done < 10
    rest = run_batch_sync(mod.runtime(0.0, 2), mod.samples(10), tmp_path / "b", k=1)
    assert rest.complete and rest.resumed == s.done
    assert len(read_batch(tmp_path / "b")) == 10


def test_kill_9_then_resume_gives_the_uninterrupted_output(runner: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    n, k = 12, 4
    full = tmp_path / "full"
    subprocess.run([sys.executable, str(runner), str(full), str(n), str(k), "0", "8"], env=env, check=True,
                   timeout=120)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(runner), str(cut), str(n), str(k), "0.05", "3"], env=env)
    deadline = time.time() + 60
    while _lines(cut) < 10 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _lines(cut)
    assert 10 <= before < n * k
    # a torn last line, as a write cut by kill -9 leaves it
    shards = sorted(cut.glob("shard-*.jsonl"))
    with open(shards[-1], "a") as f:
        f.write('{"schema_version": 1, "id": "torn')
    out = subprocess.run([sys.executable, str(runner), str(cut), str(n), str(k), "0", "8"], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    done, resumed, ran = map(int, out.stdout.split())
    assert done == n * k and resumed + ran == n * k and resumed >= 10
    a, b = read_batch(full), read_batch(cut)
    assert len(b) == n * k
    assert [canonical(t) for t in a] == [canonical(t) for t in b]
    keys = [json.loads(line)["metadata"]["batch"]["key"] for p in cut.glob("shard-*.jsonl")
            for line in p.read_text().splitlines() if line.endswith("}") and '"id": "torn' not in line]
    assert len(keys) == len(set(keys)) == n * k



def test_retry_failed_reruns_infrastructure_failures_only(runner: Path, tmp_path: Path) -> None:
    from deepeyes_cli.policy.base import Completion

    mod = _load(runner)

    class Broken(mod.SeededPolicy):  # type: ignore[name-defined,misc]
        async def generate(self, convs, params):  # type: ignore[no-untyped-def]
            return [Completion("", "error", error="connection refused") for _ in convs]

    rt = mod.runtime(0.0, 2)
    rt.policy = Broken(0.0)
    first = run_batch_sync(rt, mod.samples(4), tmp_path / "b", k=2, seed=1)
    assert first.errors == 8
    assert run_batch_sync(mod.runtime(0.0, 2), mod.samples(4), tmp_path / "b", k=2, seed=1).ran == 0
    again = run_batch_sync(mod.runtime(0.0, 2), mod.samples(4), tmp_path / "b", k=2, seed=1, retry_failed=True)
    assert (again.ran, again.errors) == (8, 0)
    trajs = read_batch(tmp_path / "b")
    assert len(trajs) == 8 and all(t.end_reason == "answered" for t in trajs)
    assert run_batch_sync(mod.runtime(0.0, 2), mod.samples(4), tmp_path / "b", k=2, seed=1,
                          retry_failed=True).ran == 0
