"""The tiny RL task (testing/rl_task.py) in the real bubblewrap sandbox: its one short code cell
prints the answer for every count, so the scripted ideal policy scores 1 through the real loop
and rewards; and its held-out questions as a veRL parquet load through `bench heldout`."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
from pathlib import Path

import pytest

from deepeyes_cli.agent.ask import build_runtime
from deepeyes_cli.agent.loop import run_trajectories
from deepeyes_cli.agent.records import Task, tool_calls
from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.rewards.reward import RewardScorer
from deepeyes_cli.testing.rl_task import AGENT_ARGS, QUESTION, make_image, scripted_turn, write_dataset
from deepeyes_cli.tools.registry import open_toolbox

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.needs_bwrap]


def _run(tasks: list[Task], turn: object) -> list:
    recipe = load_recipe("tiny", [*AGENT_ARGS, "sandbox.pool_size=2"]).recipe

    async def go() -> list:
        async with open_toolbox(recipe) as box:
            return await run_trajectories(tasks, build_runtime(recipe, ScriptedPolicy(turn), box))

    return asyncio.run(go())


def test_the_code_cell_prints_the_count_of_every_image() -> None:
    rng = random.Random(3)
    tasks = [Task(Sample(id=f"c{n}-{k}", question=QUESTION, answer=str(n + 1), data_source="synthetic"),
                  [make_image(n, rng)]) for n in (1, 2, 3, 4) for k in range(2)]
    trajs = _run(tasks, scripted_turn(p_tool=1.0, p_copy=1.0))
    assert [t.final_answer for t in trajs] == [t.sample.answer for t in trajs]
    assert all(tool_calls(t) == {"code": 1} for t in trajs)
    scorer = RewardScorer(load_recipe("tiny").recipe.reward)
    scores = [scorer.score_by_rules(t).score for t in trajs]
    assert scores == [1.0] * len(trajs)


def test_without_the_tool_the_policy_only_guesses(tmp_path: Path) -> None:
    tasks_file = write_dataset(tmp_path / "d.jsonl", 12, seed=5)
    from deepeyes_cli.train.rl.prompts import load_prompts

    tasks = load_prompts([tasks_file])
    trajs = _run(tasks, scripted_turn(p_tool=0.0, rng=random.Random(0)))
    assert all(not tool_calls(t) and t.end_reason == "answered" for t in trajs)
    right = sum(t.final_answer == t.sample.answer for t in trajs)
    assert right < len(trajs)  # 12 coin-flip guesses are all right with probability 2**-12


def test_the_demo_bench_file_loads_as_heldout(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("demo_steps", ROOT / "scripts" / "demo" / "steps.py")
    assert spec and spec.loader
    steps = importlib.util.module_from_spec(spec)
    sys.modules["demo_steps"] = steps
    spec.loader.exec_module(steps)
    out = steps.count_bench(tmp_path / "bench.parquet", 6)
    from deepeyes_cli.bench.load import load_benchmark
    from deepeyes_cli.bench.registry import get_spec

    loaded = load_benchmark(get_spec("heldout"), data=out["path"])
    items = loaded.items
    assert len(items) == 6 and out["items"] == 6
    assert all(i.question == QUESTION for i in items)
    answers = [line for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert [i.answer for i in items] == [Sample.model_validate_json(a).answer for a in answers]
    assert all(len(i.images) == 1 for i in items)
