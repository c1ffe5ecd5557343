"""The tiny random Qwen2.5-VL (transformers backend) through every benchmark in one run:
one policy, a data folder of <name>/ subfolders, one item each."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.bench.suite import run_suite
from deepeyes_cli.policy.factory import make_policy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.testing import bench_files as bf


@pytest.mark.slow
def test_tiny_model_runs_every_benchmark(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    for name, (writer, _) in bf.FIXTURES.items():
        writer(data / name)
    names = sorted(bf.FIXTURES)
    rec = load_recipe("tiny", ["bench.tools=off", "bench.limit=1", "bench.max_turns=1", "bench.viewer=false",
                               "agent.max_tokens_per_turn=16"]).recipe

    async def main() -> list[dict]:
        policy = make_policy(rec)
        try:
            return await run_suite(rec, [get_spec(n) for n in names], policy, tmp_path / "run", data=data)
        finally:
            await policy.aclose()

    summaries = asyncio.run(main())
    assert [s["benchmark"] for s in summaries] == names
    for s in summaries:
        assert s["items"] == 1 and s["errors"] == 0 and s["run"]["backend"] == "transformers"
        assert s["headline"]["value"] is not None
        shard = next((tmp_path / "run" / s["folder"] / "batch").glob("shard-*.jsonl"))
        traj = json.loads(shard.read_text().splitlines()[0])
        assert traj["turns"][0]["completion_tokens"] > 0 and traj["sample"]["data_source"] == s["benchmark"]
    index = (tmp_path / "run" / "report.md").read_text()
    assert all(f"| {n} |" in index for n in names)
