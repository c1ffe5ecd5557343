"""Rollout efficiency: agentic throughput ÷ raw generation throughput (goal ≥ 0.8).

Agentic: N trajectories through the agent loop (the RL rollout path) with the tiny model
on the transformers backend; every turn but the last ends in a tool call, alternating a
code tool that takes 0.2 s and a search tool that takes 1 s (scripted latency, like a
warm sandbox and a search API). Raw: the same number of model calls with the same token
budget, issued all at once with no tools. Throughput is generated tokens per second; the
ratio says how much of the generation capacity the tool waits cost.

The random tiny model does not call tools by itself: the policy wrapper generates a turn
with the real model, then appends the tool call (its tokens are not counted).

    PYTHONPATH=. python benchmarks/rl_rollout.py [--trajectories 32] [--turns 3] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from deepeyes_cli.policy.base import Completion, Conversation, SamplingParams
from deepeyes_cli.tools.base import ToolContext, ToolResult


class SlowTool:
    def __init__(self, name: str, latency_s: float) -> None:
        self.name, self.latency_s = name, latency_s
        self.description = f"{name} with {latency_s:g} s latency"
        self.parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        await asyncio.sleep(self.latency_s)
        from deepeyes_cli.protocol import tags

        return ToolResult(tags.format_code_result("3", "", 0) if self.name == "code" else "1. result")


class ToolCallingPolicy:
    """Real generation, then a tool call appended (code, search, …), an answer on the last turn."""

    name = "transformers"

    def __init__(self, inner: Any, turns: int) -> None:
        self.inner, self.turns = inner, turns
        self.generated = 0
        self.count_text_tokens = inner.count_text_tokens

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        outs = await self.inner.generate(conversations, SamplingParams(max_tokens=params.max_tokens, temperature=1.0))
        for conv, c in zip(conversations, outs, strict=True):
            self.generated += len(c.token_ids or [])
            turn = sum(1 for m in conv.messages if m.role == "assistant")
            body = c.text.replace("<", " ")  # keep the model's text from opening tags of its own
            if turn == self.turns - 1:
                tail = "<answer>3</answer>"
            elif turn % 2 == 0:
                tail = "<code>\n```python\nprint(3)\n```\n</code>"
            else:
                tail = '<tool_call>\n{"name": "search", "arguments": {"query": "q"}}\n</tool_call>'
            c.text = ("" if conv.assistant_prefix else "<think>") + f"{body}</think>\n{tail}"
            c.token_ids, c.finish_reason, c.stop_reason = None, "stop", None
            c.metadata["completion_tokens"] = 1
        return outs

    async def aclose(self) -> None:
        await self.inner.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trajectories", type=int, default=32)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import torch

    from deepeyes_cli.agent.config import AgentConfig
    from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
    from deepeyes_cli.agent.records import Task
    from deepeyes_cli.agent.trajectory import Sample
    from deepeyes_cli.models.config import ModelConfig
    from deepeyes_cli.models.loading import load_model_and_processor
    from deepeyes_cli.policy.base import ChatMessage
    from deepeyes_cli.policy.hf import TransformersPolicy

    torch.manual_seed(0)
    model, proc = load_model_and_processor(ModelConfig(path="builtin:tiny", dtype="float32", device="cpu"))
    hf = TransformersPolicy(model, proc, max_batch_size=args.batch)
    pol = ToolCallingPolicy(hf, args.turns)
    tools = {"code": SlowTool("code", 0.2), "search": SlowTool("search", 1.0)}
    cfg = AgentConfig(max_turns=args.turns, max_tokens_per_turn=args.tokens, max_context_tokens=8192,
                      concurrency=args.trajectories, tools=["code", "search"], temperature=1.0)

    async def agentic() -> float:
        tasks = [Task(Sample(id=f"s{i}", question=f"question {i}?", answer="3")) for i in range(args.trajectories)]
        rt = AgentRuntime(pol, tools, cfg, system_prompt=None, instruction="Answer.")  # type: ignore[arg-type]
        t0 = time.perf_counter()
        trajs = await run_trajectories(tasks, rt)
        wall = time.perf_counter() - t0
        assert all(len(t.turns) == args.turns for t in trajs), [t.end_reason for t in trajs]
        return wall

    async def raw() -> tuple[float, int]:
        convs = [Conversation([ChatMessage("user", [f"question {i}?"])]) for i in range(args.trajectories * args.turns)]
        params = SamplingParams(max_tokens=args.tokens, temperature=1.0)
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(hf.generate([c], params) for c in convs))
        return time.perf_counter() - t0, sum(len(o[0].token_ids or []) for o in outs)

    asyncio.run(raw())  # warm-up
    raw_s, raw_tokens = asyncio.run(raw())
    agent_s = asyncio.run(agentic())
    agent_tokens = pol.generated
    ratio = (agent_tokens / agent_s) / (raw_tokens / raw_s)
    print(json.dumps({
        "benchmark": "rl_rollout", "trajectories": args.trajectories, "turns": args.turns,
        "tokens_per_turn": args.tokens, "max_batch_size": args.batch, "tool_latency_s": {"code": 0.2, "search": 1.0},
        "raw_tokens_per_s": round(raw_tokens / raw_s, 1), "agentic_tokens_per_s": round(agent_tokens / agent_s, 1),
        "raw_s": round(raw_s, 2), "agentic_s": round(agent_s, 2), "ratio": round(ratio, 3), "goal": 0.8,
        "met": ratio >= 0.8}, indent=2))


if __name__ == "__main__":
    main()
