"""Overhead and concurrency of `deepeyes bench`'s runner, as JSON.

Items are generated 32x32 multiple-choice questions run through the real runner (the one
agent loop, scoring, append-only trajectories + scores) with the scripted policy. Goals:
  - per-item overhead (wall time minus policy time, one item at a time, the marginal cost of
    an item: two run sizes subtracted) <= 5 ms;
  - 1,000 items at concurrency 64, each model call sleeping --latency s, finish within
    1.2 x (sum of policy latencies / 64).
Also reported: the time to write the report (summary, plots, HTML) of the 1,000 items.
Usage: python benchmarks/bench.py [--items 1000] [--concurrency 64] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime
from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.judging import BenchScorer
from deepeyes_cli.bench.load import load_benchmark
from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.bench.runner import run_benchmark_items
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.rewards.config import RewardConfig

ANSWER = "<think>It is the first one.</think>\n<answer>A</answer>"


def make_items(n: int) -> list[BenchItem]:
    base = load_benchmark(get_spec("mini")).items
    return [BenchItem(f"q{i}", base[i % len(base)].question + f" (#{i})", base[i % len(base)].answer,
                      base[i % len(base)].images, base[i % len(base)].choices, base[i % len(base)].category)
            for i in range(n)]


def run(items: list[BenchItem], concurrency: int, latency: float, out: Path) -> tuple[float, float]:
    """Wall time and the sum of policy latencies."""
    policy = ScriptedPolicy([ANSWER], delay_s=latency)
    runtime = AgentRuntime(policy, {}, AgentConfig(max_turns=11, concurrency=concurrency), "SYSTEM", "INSTRUCTION")
    scorer = BenchScorer.build(get_spec("mini"), RewardConfig(), out / "judge.sqlite")
    t0 = time.perf_counter()
    results = asyncio.run(run_benchmark_items(items, "mini", runtime, out, scorer, concurrency=concurrency))
    wall = time.perf_counter() - t0
    assert len(results) == len(items) and all(r.score is not None for r in results)
    return wall, policy.calls * latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=1.0, help="Seconds each model call takes (a real model: 1-10 s).")
    ap.add_argument("--overhead-items", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(make_items(20), 1, 0.0, root / "warm")  # imports, first encode
        # the marginal cost of an item: the difference of two runs, so fixed costs (opening the judge
        # cache, the batch manifest) are not spread over the items
        n0, n1 = args.overhead_items // 5, args.overhead_items
        small = statistics.median(run(make_items(n0), 1, 0.0, root / f"s{k}")[0] for k in range(3))
        big = statistics.median(run(make_items(n1), 1, 0.0, root / f"b{k}")[0] for k in range(3))
        per_item_ms = (big - small) / (n1 - n0) * 1000
        fixed_ms = (small - n0 * per_item_ms / 1000) * 1000
        wall, policy_s = run(make_items(args.items), args.concurrency, args.latency, root / "many")
        ideal = policy_s / args.concurrency
        from deepeyes_cli.bench.report import write_report
        from deepeyes_cli.bench.results import read_results
        from deepeyes_cli.bench.summary import summarize

        t0 = time.perf_counter()
        res = list(read_results(root / "many" / "scores.jsonl").values())
        write_report(root / "many", get_spec("mini"), summarize(get_spec("mini"), res), res, viewer=False)
        report_s = time.perf_counter() - t0
    result = {
        "overhead_items": args.overhead_items, "per_item_overhead_ms": round(per_item_ms, 3),
        "fixed_cost_per_run_ms": round(fixed_ms, 1),
        "items": args.items, "concurrency": args.concurrency, "latency_s": args.latency,
        "wall_s": round(wall, 3), "sum_policy_latency_s": round(policy_s, 3), "ideal_s": round(ideal, 3),
        "ratio_to_ideal": round(wall / ideal, 3), "report_s_without_viewer": round(report_s, 3),
        "goals": {"per_item_overhead_ms": 5.0, "ratio_to_ideal": 1.2},
    }
    result["meets_goals"] = per_item_ms <= 5.0 and wall / ideal <= 1.2
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
