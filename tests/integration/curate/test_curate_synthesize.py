"""Synthesis from several weighted OpenAI-compatible teachers (fake servers on 127.0.0.1):
judge-filtered, tool-using only, priced per model, stopped cleanly by a budget cap, resumed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from curate_helpers import arithmetic_teacher, judge_responder

from deepeyes_cli.curate.ingest import ingest
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.curate.synthesize import assign, read_kept, synthesize
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.testing.fake_openai import FakeOpenAI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _data(tmp_path: Path, n: int) -> DataDir:
    rows = [{"id": f"m{i}", "question": f"What is {i + 11} * {i + 3}?", "answer": str((i + 11) * (i + 3)),
             "data_source": "reason"} for i in range(n)]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = DataDir(tmp_path / "data")
    ingest([str(tmp_path / "q.jsonl")], data.path, load_recipe("tiny", []).recipe.curate)
    return data


def _recipe(tmp_path: Path, judge: FakeOpenAI, teachers: list[dict[str, Any]], *extra: str) -> Any:
    models = json.dumps(teachers)
    return load_recipe("tiny", [
        f"curate.synthesize.models={models}", "curate.synthesize.attempts=2", "curate.synthesize.only_hard=false",
        "agent.tools=[code]", "reward.matching=judge", f"reward.judge.base_url={judge.base_url}",
        f"reward.cache_path={tmp_path / 'judge.sqlite'}", *extra]).recipe


def test_weighted_teachers_judge_filter_and_cost_per_model(tmp_path: Path) -> None:
    data = _data(tmp_path, 8)
    with FakeOpenAI(judge_responder, model="judge") as judge, \
            FakeOpenAI(arithmetic_teacher(), model="good") as good, \
            FakeOpenAI(arithmetic_teacher(wrong=True), model="bad") as bad, \
            FakeOpenAI(arithmetic_teacher(no_tools=True), model="lazy") as lazy:
        teachers = [{"name": "good", "base_url": good.base_url, "weight": 2, "input_price_per_mtok": 1.0, "concurrency": 2,
                     "output_price_per_mtok": 4.0},
                    {"name": "bad", "base_url": bad.base_url, "weight": 1, "output_price_per_mtok": 2.0,
                     "concurrency": 2},
                    {"name": "lazy", "base_url": lazy.base_url, "weight": 1, "concurrency": 2}]
        recipe = _recipe(tmp_path, judge, teachers)
        seen: list[tuple[int, int, float]] = []
        s = asyncio.run(synthesize(recipe, data, lambda d, t, c, _m: seen.append((d, t, c))))
        n_judge = len(judge.requests)
    groups = assign(data.load_samples(), recipe.curate.synthesize.models, recipe.run.seed)
    assert sum(map(len, groups)) == 8 and len(groups[0]) > len(groups[2]) > 0
    kept = read_kept(data)
    assert {t.metadata["teacher"] for t in kept} == {"good"}
    assert len(kept) == len({t.sample.id for t in kept}) == len(groups[0])  # two identical attempts: one kept
    assert s["dropped"] == {"wrong answer": 2 * len(groups[1]), "no tool call": 2 * len(groups[2]),
                            "duplicate": len(groups[0])}
    for t in kept:
        assert t.final_answer == t.sample.answer and t.turns[0].tool == "code"
    m = s["models"]["good"]
    assert m["trajectories"] == 2 * len(groups[0]) and m["calls"] == 2 * m["trajectories"]
    assert m["cost_usd"] == pytest.approx((m["prompt_tokens"] * 1.0 + m["completion_tokens"] * 4.0) / 1e6)
    assert s["models"]["bad"]["cost_usd"] == pytest.approx(s["models"]["bad"]["completion_tokens"] * 2.0 / 1e6)
    assert s["models"]["lazy"]["cost_usd"] == 0.0 and s["cost_usd"] > 0
    assert seen[-1][:2] == (16, 16) and seen[-1][2] == pytest.approx(s["cost_usd"])
    assert n_judge > 0  # matching=judge: every answer went to the judge


def test_budget_cap_stops_cleanly_and_a_higher_cap_goes_on(tmp_path: Path) -> None:
    data = _data(tmp_path, 5)
    with FakeOpenAI(judge_responder, model="judge") as judge, FakeOpenAI(arithmetic_teacher(), model="t") as t:
        teachers = [{"name": "t", "base_url": t.base_url, "concurrency": 2}]
        first = asyncio.run(synthesize(_recipe(tmp_path, judge, teachers, "curate.synthesize.budget.max_calls=6"),
                                       data))
        assert not first["complete"] and "6 model calls" in first["stopped"]
        made = first["models"]["t"]["calls"]
        assert 6 <= made <= 6 + 2 * 2  # pairs in flight when the cap was hit finish
        calls_before = len(t.requests)
        # the same cap again: what was spent counts, nothing new starts
        same = asyncio.run(synthesize(_recipe(tmp_path, judge, teachers, "curate.synthesize.budget.max_calls=6"),
                                      data))
        assert same["stopped"] and len(t.requests) == calls_before
        done = asyncio.run(synthesize(_recipe(tmp_path, judge, teachers, "curate.synthesize.budget.max_calls=1000"),
                                      data))
    assert done["complete"] and done["stopped"] is None and done["trajectories"] == 10
    assert done["models"]["t"]["calls"] == 20  # 10 trajectories of 2 calls, none run twice
    assert len(read_kept(data)) == 5
