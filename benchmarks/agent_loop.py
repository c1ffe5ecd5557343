"""Overhead and concurrency of the agent loop, as JSON.

Scripted policy (instant) and a tool that sleeps 0.2 s; each trajectory makes 5 tool calls
and then answers (6 model turns). Goals:
  - loop overhead per turn (wall time minus policy and tool time) <= 2 ms; also reported:
    the whole wall time per turn when policy and tool cost nothing (an upper bound);
  - 64 trajectories finish in <= 1.5x the time of one (they overlap their tool waits).
Usage: python benchmarks/agent_loop.py [--trajectories 64] [--tool-turns 5] [--sleep 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.tools.base import ToolContext, ToolResult

CALL = '<think>Look it up.</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "red sign %d"}}\n</tool_call>'
ANSWER = "That settles it.</think>\n<answer>STOP</answer>"


class SleepingSearch:
    name = "search"
    description = "Sleeps, then returns a short result."
    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s
        self.parameters = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        await asyncio.sleep(self.sleep_s)
        return ToolResult(text=f"A Google search for '{args['query']}' found 1 results:\n\n## Web Results\n"
                               "1. [A page](https://example.org)\n\nA snippet.")


def run(n: int, tool_turns: int, sleep_s: float) -> tuple[float, list[Trajectory]]:
    turns = [CALL % i for i in range(tool_turns)] + [ANSWER]
    cfg = AgentConfig(max_turns=tool_turns + 1, concurrency=max(n, 1))
    runtime = AgentRuntime(ScriptedPolicy(turns), {"search": SleepingSearch(sleep_s)}, cfg, "SYSTEM", "INSTRUCTION")
    image = Image.new("RGB", (640, 480), (120, 160, 230))
    tasks = [Task(Sample(id=f"s{i}", question="What does the sign say?"), [image]) for i in range(n)]
    t0 = time.perf_counter()
    trajs = asyncio.run(run_trajectories(tasks, runtime))
    wall = time.perf_counter() - t0
    bad = [t.end_reason for t in trajs if t.end_reason != "answered"]
    if bad:
        raise SystemExit(f"unexpected ends: {bad[:3]}")
    return wall, trajs


def overhead_ms_per_turn(trajs: list[Trajectory]) -> float:
    """Per trajectory: wall time minus time in the policy and in tools, per model turn."""
    per_turn = []
    for t in trajs:
        inside = sum((u.generation_s or 0) + (u.tool_s or 0) for u in t.turns)
        per_turn.append(((t.wall_s or 0) - inside) / len(t.turns) * 1000)
    return statistics.median(per_turn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trajectories", type=int, default=64)
    ap.add_argument("--tool-turns", type=int, default=5)
    ap.add_argument("--sleep", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3, help="Take the median of this many runs.")
    args = ap.parse_args()
    run(1, args.tool_turns, 0.0)  # warm up (imports, first PNG encode)
    free_runs = [run(1, args.tool_turns, 0.0) for _ in range(5)]
    overheads = [overhead_ms_per_turn(trajs) for _, trajs in free_runs]
    # an upper bound that trusts no timer of the loop: everything (event loop start, records,
    # the scripted policy itself) divided by the turns, with a tool that costs nothing
    upper = statistics.median(w / len(trajs[0].turns) * 1000 for w, trajs in free_runs)
    single = statistics.median(run(1, args.tool_turns, args.sleep)[0] for _ in range(args.repeats))
    many_runs = [run(args.trajectories, args.tool_turns, args.sleep) for _ in range(args.repeats)]
    many = statistics.median(w for w, _ in many_runs)
    overhead = statistics.median(overheads)
    result = {
        "tool_turns": args.tool_turns, "tool_sleep_s": args.sleep, "trajectories": args.trajectories,
        "overhead_ms_per_turn": round(overhead, 3),
        "overhead_ms_per_turn_concurrent": round(overhead_ms_per_turn(many_runs[0][1]), 3),
        "wall_ms_per_turn_free_policy_and_tool": round(upper, 3),
        "one_trajectory_s": round(single, 3), "all_trajectories_s": round(many, 3),
        "ratio": round(many / single, 3),
        "goals": {"overhead_ms_per_turn": 2.0, "ratio": 1.5},
    }
    result["meets_goals"] = overhead <= 2.0 and many / single <= 1.5
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
