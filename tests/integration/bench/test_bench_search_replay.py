"""Search benchmarks repeat exactly and cost nothing the second time: `--search replay`
answers every search from the cache the live run filled (SerpAPI is the fake, on loopback)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deepeyes_cli.bench.load import load_benchmark
from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.bench.suite import run_suite
from deepeyes_cli.policy.base import Conversation
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.testing import bench_files as bf
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

KEY = "sk-fake-bench-0123456789"


def observations(folder: Path) -> dict[str, list[str]]:
    out = {}
    for shard in sorted((folder / "batch").glob("shard-*.jsonl")):
        for line in shard.read_text().splitlines():
            rec = json.loads(line)
            out[rec["sample"]["id"]] = [p["text"] for m in rec["messages"][2:] if m["role"] == "user"
                                        for p in m["content"] if p["type"] == "text"]
    return out


@pytest.mark.slow
def test_replay_repeats_a_live_run_without_calling_serpapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPAPI_API_KEY", KEY)
    data = bf.mmsearch_parquet(tmp_path / "data")
    items = {it.question: it for it in load_benchmark(get_spec("mmsearch"), data).items}

    def turn(conv: Conversation) -> str:
        text = "".join(p for m in conv.messages[1:2] for p in m.content if isinstance(p, str))
        item = next(it for q, it in items.items() if q in text)
        if sum(1 for m in conv.messages if m.role == "assistant") == 0:
            call = json.dumps({"name": "search", "arguments": {"query": item.question}})
            return f"<think>search</think>\n<tool_call>\n{call}\n</tool_call>"
        return f"<think>found</think>\n<answer>{item.answer}</answer>"

    with FakeSerpAPI(api_key=KEY) as fake:
        def recipe(mode: str) -> Any:
            return load_recipe("tiny", [
                f"bench.search={mode}", "bench.viewer=false", "agent.tools=[search]", "sandbox.pool_size=1",
                "search.backend=serpapi", f"search.serpapi.base_url={fake.url}",
                f"search.cache.path={tmp_path / 'search.sqlite'}", "search.serpapi.retries=0"]).recipe

        live = asyncio.run(run_suite(recipe("live"), [get_spec("mmsearch")], ScriptedPolicy(turn), tmp_path / "a",
                                     data=data))[0]
        paid = sum(fake.calls.values())
        replay = asyncio.run(run_suite(recipe("replay"), [get_spec("mmsearch")], ScriptedPolicy(turn),
                                       tmp_path / "b", data=data))[0]
        assert sum(fake.calls.values()) == paid  # nothing asked upstream the second time
    assert paid == len(items)
    assert live["run"]["search_mode"] == "live" and replay["run"]["search_mode"] == "replay"
    assert live["tool_use"]["all"]["by_tool"] == {"search": len(items)} == replay["tool_use"]["all"]["by_tool"]
    a, b = observations(tmp_path / "a" / "mmsearch"), observations(tmp_path / "b" / "mmsearch")
    assert a == b and all("Web Results" in obs[0] for obs in a.values())
    assert live["headline"]["value"] == replay["headline"]["value"] == 100.0
