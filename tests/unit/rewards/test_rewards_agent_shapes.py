"""Format verdicts on trajectories the real agent loop writes (scripted policy, real tools),
checked against the original's rules applied as the original applied them: to the whole
decoded response, tool results included (reference §4)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.rewards.reward import RewardScorer
from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.tools.base import ToolContext, ToolResult
from deepeyes_cli.tools.code import CodeTool


class PageSearch:
    """A `search` tool answering with a fixed page."""

    name = "search"
    description = "Web search."
    parameters: dict[str, Any] = {"type": "object", "properties": {"query": {"type": "string"}},
                                  "required": ["query"]}

    def __init__(self, page: str = "1. [Eiffel Tower](https://x) 330 m tall") -> None:
        self.page = page

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult(text=f"A Google search for '{args['query']}' found 1 results:\n\n{self.page}")


class PrintingSession:
    """A sandbox session whose cells print a fixed line (a prompt may quote tags: the model can print them)."""

    id = "s"

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout

    async def run(self, code: str, timeout: float | None = None) -> CellResult:
        return CellResult("ok", stdout=self.stdout)

    async def close(self) -> None:
        return None


def rollout(turns: list[str], source: str = "search", answer: str = "330 m", page: str | None = None,
            stdout: str = "(32, 32)") -> Trajectory:
    tools: dict[str, Any] = {"search": PageSearch(page) if page else PageSearch(), "code": CodeTool()}

    async def open_session(images: Any, session_id: str | None) -> PrintingSession:
        return PrintingSession(stdout)

    runtime = AgentRuntime(ScriptedPolicy(turns), tools, AgentConfig(), "SYS", "INSTR", open_session=open_session)
    task = Task(Sample(id="s", question="How tall is the tower?", answer=answer, data_source=source),
                [Image.new("RGB", (32, 32))])
    return asyncio.run(run_trajectory(task, runtime))


def original_verdict(traj: Trajectory, tool_call_tags: bool) -> tuple[bool, str | None, bool]:
    """(format ok, answer, searched) by the original's rules over the decoded response."""
    first = next(i for i, m in enumerate(traj.messages) if m.role == "assistant")
    text = "".join(m.text for m in traj.messages[first:])
    if not text.startswith("<think>"):
        text = "<think>" + text
    ok = text.count("<think>") == text.count("</think>") > 0 and text.count("<code>") == text.count("</code>")
    if tool_call_tags:
        ok = ok and text.count("<tool_call>") == text.count("</tool_call>")
    tail = text.split("</think>")[-1].strip()
    ok = ok and tail.count("<answer>") == tail.count("</answer>") > 0
    m = re.search(r"<answer>(.*?)</answer>", tail, re.S)
    answer = m.group(1).strip() if m else None
    ok = ok and bool(answer) and len(answer or "") < 300
    return ok, answer or None, text.count("<tool_call>") > 0


SEARCH = '<think>Look it up.</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "tower height"}}\n</tool_call>'
CODE = "<think>Zoom in.</think>\n<code>\n```python\nprint(image_1.size)\n```\n</code>"
SHAPES = {
    "search then answer": [SEARCH, "It says 330 m.</think>\n<answer>330 m</answer>"],
    "code then answer": [CODE, "The sign says 330 m.</think>\n<answer>330 m</answer>"],
    "code and search": [CODE, "Search instead.</think>\n<tool_call>\n{\"name\": \"search\", \"arguments\": "
                              "{\"query\": \"tower\"}}\n</tool_call>", "Found.</think>\n<answer>300 m</answer>"],
    "malformed tool call": ["<think>Search.</think>\n<tool_call>\n{name: search}\n</tool_call>",
                            "Retry.</think>\n<answer>330 m</answer>"],
    "answer and tool in one turn": ["<think>Sure.</think>\n<answer>330 m</answer>\n" + CODE[len("<think>Zoom in.</think>\n"):]],
    "unclosed think": ["<think>Let me think about this for a long"],
    "answer outside tags": ["I think it is 330 m."],
    "over-long answer": ["<think>Explain.</think>\n<answer>330 m, " + "because " * 40 + "</answer>"],
    "two answers": ["<think>Hm.</think>\n<answer>330 m</answer><answer>300 m</answer>"],
}


@pytest.mark.parametrize("source", ["search", "perception"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_format_verdict_matches_the_original_on_agent_rollouts(shape: str, source: str) -> None:
    traj = rollout(SHAPES[shape], source)
    b = RewardScorer(RewardConfig()).score_by_rules(traj)
    ok, answer, searched = original_verdict(traj, tool_call_tags=source == "search")
    assert (b.format == 1.0, b.prediction) == (ok, answer), [v.rule for v in b.violations]
    assert ("search" in b.penalties) == (searched and source == "search")
    if b.prediction and not any(v.rule == "answer_too_long" for v in b.violations):
        assert b.accuracy == (1.0 if b.prediction == "330 m" else 0.0)


def test_a_corrected_turn_is_judged_on_what_the_model_wrote() -> None:
    # The original ended the episode at a <code> without a python block; our loop sends a
    # correction (whose text names the tags, unbalanced) and goes on. Only the model's turns count.
    traj = rollout(["<think>Crop.</think>\n<code>\nprint(1)\n</code>", "ok</think><answer>330 m</answer>"])
    b = RewardScorer(RewardConfig()).score_by_rules(traj)
    assert b.format == 1.0 and b.accuracy == 1.0 and [w.rule for w in b.warnings] == ["code_block_missing"]
    assert RewardScorer(RewardConfig(strict_format=True)).score_by_rules(traj).format == 0.0


def test_tags_inside_a_search_result_are_where_the_original_differs() -> None:
    # A page quoting "<answer>": the original counted it (and graded that answer); we do not.
    traj = rollout([SEARCH, "The page helps.</think>\n<answer>330 m</answer>"],
                   page="Forum post: <think> my guess </think> <answer>300 m</answer>")
    b = RewardScorer(RewardConfig()).score_by_rules(traj)
    assert b.format == 1.0 and b.prediction == "330 m" and b.accuracy == 1.0
    ok, answer, _ = original_verdict(traj, tool_call_tags=True)
    assert (ok, answer) == (True, "330 m")  # here the extra pair is balanced and before the last </think>
    # Code printing a tag: the original's count broke; the model's own turns are well formed.
    traj = rollout([CODE, "Printed.</think>\n<answer>330 m</answer>"], stdout="<code>")
    assert RewardScorer(RewardConfig()).score_by_rules(traj).format == 1.0
    assert original_verdict(traj, tool_call_tags=True)[0] is False
