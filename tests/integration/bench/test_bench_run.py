"""`deepeyes bench` end to end: every benchmark's files through the one agent loop with the
scripted policy, scored and reported; the judge path; the code tool; compare."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.load import load_benchmark
from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.bench.suite import run_suite
from deepeyes_cli.policy.base import Conversation
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.testing import bench_files as bf
from deepeyes_cli.testing.fake_openai import FakeOpenAI

FULL_MARKS = {"ocrbench": 4.0}  # points: one per item


def right_answer(item: BenchItem) -> str:
    """What a perfect model would put in <answer> for each benchmark."""
    if item.choices and item.answer and len(item.answer) == 1:
        return item.answer
    evals = item.meta.get("answer_eval")
    if evals and isinstance(evals[0], dict):
        return str(evals[0]["wikidata"])
    return (item.answers or [item.answer or ""])[0]


def oracle(items: list[BenchItem], wrong: bool = False) -> ScriptedPolicy:
    def turn(conv: Conversation) -> str:
        text = "".join(p for m in conv.messages if m.role == "user" for p in m.content if isinstance(p, str))
        item = max((it for it in items if it.question.strip() in text), key=lambda it: len(it.question))
        return f"<think>looking</think>\n<answer>{'zzz unknown thing' if wrong else right_answer(item)}</answer>"
    return ScriptedPolicy(turn)


def recipe(*overrides: str) -> Any:
    return load_recipe("tiny", ["bench.tools=off", "bench.viewer=false", *overrides]).recipe


def run(rec: Any, name: str, data: Path, policy: ScriptedPolicy, out: Path) -> dict[str, Any]:
    return asyncio.run(run_suite(rec, [get_spec(name)], policy, out, data=data))[0]


@pytest.mark.parametrize("name", sorted(bf.FIXTURES))
def test_each_benchmark_scores_a_perfect_model_at_full_marks(name: str, tmp_path: Path) -> None:
    data = bf.FIXTURES[name][0](tmp_path / "data")
    items = load_benchmark(get_spec(name), data).items
    s = run(recipe(), name, data, oracle(items), tmp_path / "run")
    assert s["unjudged"] == 0 and s["errors"] == 0
    assert s["headline"]["value"] == FULL_MARKS.get(name, 100.0), s["decided_by"]
    results = [json.loads(line) for line in (tmp_path / "run" / s["folder"] / "results.jsonl").read_text().splitlines()]
    assert {r["id"] for r in results} == {it.id for it in items}
    assert all(r["trajectory_id"] and r["prediction"] for r in results)


@pytest.mark.parametrize("name", ["vstar", "ocrbench", "mmsearch", "mme-realworld-lite", "infoseek"])
def test_a_wrong_model_scores_zero(name: str, tmp_path: Path) -> None:
    data = bf.FIXTURES[name][0](tmp_path / "data")
    items = load_benchmark(get_spec(name), data).items
    s = run(recipe(), name, data, oracle(items, wrong=True), tmp_path / "run")
    assert s["headline"]["value"] == 0.0


def grade(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    cand = user.split("<candidate>\n", 1)[1].rsplit("\n</candidate>", 1)[0]
    return "VERDICT: " + ("CORRECT" if "Eiffel" in cand else "INCORRECT")


def test_rules_then_the_cached_judge_and_unjudged_without_one(tmp_path: Path) -> None:
    data = bf.realx_parquet(tmp_path / "data")
    items = load_benchmark(get_spec("realx"), data).items

    def turn(conv: Conversation) -> str:
        text = str(conv.messages[-1].content)
        said = "Paris, by the Eiffel tower" if "city" in text else "1853" if "painter" in text else "five"
        return f"<answer>{said}</answer>"

    s = run(recipe(), "realx", data, ScriptedPolicy(turn), tmp_path / "a")
    assert s["unjudged"] == 1 and s["decided_by"]["rule"] == 2  # "1853" and "five" ≠ "4" by rules
    cache = tmp_path / "judge.sqlite"
    with FakeOpenAI(grade, model="judge") as fake:
        rec = recipe(f"reward.judge.base_url={fake.base_url}", f"reward.cache_path={cache}")
        s = run(rec, "realx", data, ScriptedPolicy(turn), tmp_path / "a")  # resumed: only the judge is asked
        assert len(fake.requests) == 1
    assert s["unjudged"] == 0 and s["decided_by"]["judge"] == 1
    assert s["headline"]["value"] == pytest.approx(66.67)
    assert s["breakdowns"]["capability"]["reason"]["accuracy"] == 50.0
    with FakeOpenAI(grade, model="judge") as fake:  # a new run, same answers: the judge's cache answers
        rec = recipe(f"reward.judge.base_url={fake.base_url}", f"reward.cache_path={cache}")
        run(rec, "realx", data, ScriptedPolicy(turn), tmp_path / "b")
        assert len(fake.requests) <= 1 and all("chat" not in str(r) for r in fake.requests[1:])
    assert {it.id for it in items} == {json.loads(x)["id"] for x in (tmp_path / "b/realx-no-tools/results.jsonl").open()}


@pytest.mark.slow
def test_report_files_plots_html_links_and_tools_off_ablation(tmp_path: Path) -> None:
    items = load_benchmark(get_spec("mini"), limit=4).items
    rec = load_recipe("tiny", ["bench.tools=both", "bench.limit=4", "sandbox.pool_size=2"]).recipe
    code_then_answer = ["<think>check</think>\n<code>\n```python\nprint(image_1.size)\n```\n</code>",
                        "<think>ok</think>\n<answer>A</answer>"]

    def turn(conv: Conversation) -> str:
        k = sum(1 for m in conv.messages if m.role == "assistant")
        return code_then_answer[k] if "<code>" in str(conv.messages[0].content) else code_then_answer[1]

    summaries = asyncio.run(run_suite(rec, [get_spec("mini")], ScriptedPolicy(turn), tmp_path / "run"))
    assert [s["folder"] for s in summaries] == ["mini", "mini-no-tools"]
    with_tools, without = summaries
    assert with_tools["tool_use"]["all"]["by_tool"] == {"code": len(items)}
    assert without["tool_use"]["all"]["mean_tool_calls"] == 0
    assert with_tools["turns"] == {2: len(items)} and without["turns"] == {1: len(items)}
    folder = tmp_path / "run" / "mini"
    for png in ("accuracy_by_category", "tool_use_by_category", "turns_histogram", "errors"):
        with Image.open(folder / "plots" / f"{png}.png") as im:
            assert im.size[0] > 200 and len(im.convert("L").getcolors(65536) or []) > 5  # drawn, not blank
    md = (folder / "report.md").read_text()
    assert "| mini | **25** |" in md and "## Per category" in md  # the scripted model always says A
    html = (folder / "report.html").read_text()
    traj_ids = [json.loads(x)["id"] for shard in (folder / "batch").glob("shard-*.jsonl") for x in shard.open()]
    assert len(traj_ids) == len(items)
    viewer = (folder / "trajectories.html").read_text()
    for tid in traj_ids:
        assert f'href="trajectories.html#t-{tid}"' in html and f'id="t-{tid}"' in viewer
    index = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(index) == {"mini", "mini-no-tools"}


def test_compare_flipped_items_category_deltas_and_ci(tmp_path: Path, cli: Any) -> None:
    items = load_benchmark(get_spec("mini")).items
    run(recipe(), "mini", Path("unused"), oracle(items, wrong=True), tmp_path / "a")
    run(recipe(), "mini", Path("unused"), oracle(items), tmp_path / "b")
    r = cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["mini-no-tools"]
    assert c["mean_a"] == 0.0 and c["mean_b"] == 100.0 and c["delta"] == 100.0
    assert c["gained"] == len(items) and c["lost"] == 0 and c["ci95"] == [100.0, 100.0]
    assert c["per_category"]["warm"]["delta"] == 100.0
    r = cli("bench", "compare", str(tmp_path / "a"), str(tmp_path / "nothing"))
    assert r.returncode == 1 and "not a bench run" in r.stderr


def test_circular_run_asks_every_rotation(tmp_path: Path) -> None:
    data = bf.vstar_tsv(tmp_path / "data")
    items = load_benchmark(get_spec("vstar"), data).items

    def turn(conv: Conversation) -> str:  # always picks the option text "red" or "left", by letter
        text = "".join(p for p in conv.messages[-1].content if isinstance(p, str))
        for line in text.splitlines():
            if line[2:].strip() in ("red", "left", "rubber") and line[1:2] == ".":
                return f"<answer>{line[0]}</answer>"
        return "<answer>A</answer>"

    s = run(recipe("bench.circular=true"), "vstar", data, ScriptedPolicy(turn), tmp_path / "run")
    assert s["items"] == len(items)  # the headline counts each question once
    lines = (tmp_path / "run" / s["folder"] / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 4 + 2 + 4  # every rotation asked
    # right on the cup (red) and glove (rubber), wrong on "right" (it picks left): 2 of 3 in every rotation
    assert s["circular"]["accuracy"] == pytest.approx(66.67) and s["headline"]["value"] == pytest.approx(66.67)


def test_items_the_backend_broke_are_asked_again_and_only_they(tmp_path: Path) -> None:
    items = load_benchmark(get_spec("mini")).items
    asked: list[str] = []

    def flaky(broken: set[str]) -> ScriptedPolicy:
        def turn(conv: Conversation) -> str:
            text = "".join(p for p in conv.messages[-1].content if isinstance(p, str))
            item = next(it for it in items if it.question.strip() in text)
            asked.append(item.id)
            if item.id in broken:
                raise ConnectionError("server went away")
            return f"<answer>{item.answer}</answer>"
        return ScriptedPolicy(turn)

    first = run(recipe(), "mini", Path("unused"), flaky({"1", "5"}), tmp_path / "run")
    assert first["errors"] == 2 and first["headline"]["value"] == 75.0
    assert sorted(asked) == sorted([it.id for it in items] + ["1", "5"])  # asked again once, still broken
    asked.clear()
    second = run(recipe(), "mini", Path("unused"), flaky(set()), tmp_path / "run")
    assert sorted(asked) == ["1", "5"] and second["errors"] == 0 and second["headline"]["value"] == 100.0
    asked.clear()
    run(recipe(), "mini", Path("unused"), flaky(set()), tmp_path / "run")
    assert asked == []  # nothing left to ask
