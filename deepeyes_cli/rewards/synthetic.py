"""Trajectory records in the shapes the agent protocol writes, for tests, benchmarks and docs.

An assistant turn holds what the model's context saw: after a tool result the protocol
prefills ``<think>``, and a tool turn ends with its stop string (``</code>``,
``</tool_call>``). Tool results are user turns: ``Code execution result:…`` for code,
``<tool_response>…</tool_response>`` for search.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from deepeyes_cli.agent.trajectory import Message, Sample, TextPart, Trajectory

CODE_RESULT = "Code execution result:\nstdout:\n```\n{stdout}\n```\n\nstderr:\n```\n\n```"
SEARCH_RESULT = "<tool_response>\n{text}\n</tool_response>"


def code_turn(thought: str, code: str) -> str:
    return f"<think>{thought}</think>\n<code>\n```python\n{code}\n```\n</code>"


def search_turn(thought: str, query: str | None = None) -> str:
    call = json.dumps({"name": "image_search"} if query is None else
                      {"name": "search", "arguments": {"query": query}}, ensure_ascii=False)
    return f"<think>{thought}</think>\n<tool_call>\n{call}\n</tool_call>"


def answer_turn(thought: str, answer: str) -> str:
    return f"<think>{thought}</think>\n<answer>{answer}</answer>"


def make_trajectory(turns: Sequence[str], *, answer: str | None, question: str = "What is shown?",
                    data_source: str = "perception", choices: list[str] | None = None,
                    observations: Sequence[str] | None = None, traj_id: str = "t0") -> Trajectory:
    """A record whose assistant turns are ``turns``; between two turns comes an observation
    (given, or a code/search result matching the previous turn). Turns after the first get the
    prefilled ``<think>`` only if they start with it already, as the protocol writes them."""
    messages = [Message(role="system", content=[TextPart(text="You are a visual agent.")]),
                Message(role="user", content=[TextPart(text=question)])]
    for i, turn in enumerate(turns):
        messages.append(Message(role="assistant", content=[TextPart(text=turn)]))
        if i < len(turns) - 1:
            if observations is not None:
                obs = observations[i]
            elif "<tool_call>" in turn:
                obs = SEARCH_RESULT.format(text="A Google search found 1 results:\n\n## Web Results\n1. [t](u)")
            else:
                obs = CODE_RESULT.format(stdout="ok")
            messages.append(Message(role="user", content=[TextPart(text=obs)]))
    sample = Sample(id=f"s-{traj_id}", question=question, answer=answer, data_source=data_source, choices=choices)
    return Trajectory(id=traj_id, sample=sample, messages=messages, final_answer=None, end_reason="answered")
