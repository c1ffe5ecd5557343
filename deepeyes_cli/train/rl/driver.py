"""One step's rollouts through the one agent loop, scored and flagged.

Each prompt is run ``n`` times (its group); every trajectory is an asyncio task of
``agent.loop.run_trajectories``, so tools run while other trajectories generate and the
backend batches whatever is waiting (continuous batching across turns). Generated ids
are kept as generated (token mode). Then rewards (rules, then the cached judge), and the
flags the filters read: ``infra_error`` (sandbox/search/judge failure, a backend error),
``truncated`` (a limit cut it), ``void_turn`` (a turn with neither tool call nor answer),
``format_error``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
from deepeyes_cli.agent.records import Task, tool_calls
from deepeyes_cli.train.rl.advantage import FORMAT_ERROR, INFRA_ERROR, TRUNCATED, VOID_TURN, Scored

if TYPE_CHECKING:
    from deepeyes_cli.agent.trajectory import Trajectory
    from deepeyes_cli.rewards.reward import RewardScorer

TRUNCATING_ENDS = {"length", "max_turns", "context_limit", "max_images"}
INFRA_MARKERS = ("sandbox", "search backend", "timed out", "serpapi", "kernel", "unavailable")


@dataclass
class Rollout:
    traj: Trajectory
    scored: Scored
    timings: dict[str, float] = field(default_factory=dict)


def flags_for(traj: Trajectory, reward: dict[str, Any] | None) -> set[str]:
    flags: set[str] = set()
    if traj.end_reason == "error" or traj.end_reason == "tool_fatal":
        flags.add(INFRA_ERROR)
    for t in traj.turns:
        if t.tool and t.tool_ok is False and any(m in e.lower() for e in t.errors for m in INFRA_MARKERS):
            flags.add(INFRA_ERROR)  # the tool's infrastructure failed, not the model's call
        if t.action in ("none", "invalid"):
            flags.add(VOID_TURN)
    if reward is not None and reward.get("unjudged"):
        flags.add(INFRA_ERROR)
    if traj.end_reason in TRUNCATING_ENDS:
        flags.add(TRUNCATED)
    if reward is not None and reward.get("format", 1.0) < 1.0:
        flags.add(FORMAT_ERROR)
    return flags


async def collect(prompts: Sequence[Task], n: int, runtime: AgentRuntime, scorer: RewardScorer,
                  on_done: Callable[[Trajectory], None] | None = None) -> tuple[list[Rollout], dict[str, float]]:
    """Run ``n`` rollouts of every prompt, score them; (rollouts in prompt order, timings)."""
    tasks = [Task(p.sample, p.images) for p in prompts for _ in range(n)]
    t0 = time.perf_counter()
    trajs = await run_trajectories(tasks, runtime, on_done=on_done)
    t1 = time.perf_counter()
    breakdowns = await scorer.score_many(trajs)
    t2 = time.perf_counter()
    out = []
    for i, (traj, b) in enumerate(zip(trajs, breakdowns, strict=True)):
        traj.reward = b.model_dump(mode="json")
        group = f"{i // n}:{traj.sample.id}"
        calls = tool_calls(traj)
        traj.metadata["rl_group"] = group
        out.append(Rollout(traj, Scored(group=group, reward=b.score, flags=flags_for(traj, traj.reward),
                                        correct=bool(b.accuracy), tool_calls=sum(calls.values()))))
    return out, {"time/rollout_s": t1 - t0, "time/score_s": t2 - t1}


def rollout_metrics(rollouts: Sequence[Rollout], tools: Sequence[str]) -> dict[str, float]:
    """What the alarms and the run report follow, per step."""
    n = max(1, len(rollouts))
    m: dict[str, float] = {}
    rewards = [r.scored.reward for r in rollouts if r.scored.reward is not None]
    m["rollout/reward"] = sum(rewards) / len(rewards) if rewards else float("nan")
    m["rollout/accuracy"] = sum(r.scored.correct for r in rollouts) / n
    calls = [tool_calls(r.traj) for r in rollouts]
    m["rollout/tool_calls"] = sum(sum(c.values()) for c in calls) / n
    for tool in tools:
        m[f"rollout/tool_calls_{tool}"] = sum(c.get(tool, 0) for c in calls) / n
    answered = [r for r, c in zip(rollouts, calls, strict=True) if r.traj.final_answer is not None]
    m["rollout/answer_without_tool_rate"] = (sum(1 for r in answered if not tool_calls(r.traj)) / len(answered)
                                             if answered else float("nan"))
    m["rollout/format_error_rate"] = sum(FORMAT_ERROR in r.scored.flags for r in rollouts) / n
    m["rollout/infra_error_rate"] = sum(INFRA_ERROR in r.scored.flags for r in rollouts) / n
    m["rollout/truncated_rate"] = sum(TRUNCATED in r.scored.flags for r in rollouts) / n
    m["rollout/void_turn_rate"] = sum(VOID_TURN in r.scored.flags for r in rollouts) / n
    m["rollout/response_tokens"] = sum(sum(t.completion_tokens or 0 for t in r.traj.turns) for r in rollouts) / n
    m["rollout/turns"] = sum(len(r.traj.turns) for r in rollouts) / n
    return m
