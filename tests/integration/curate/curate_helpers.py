"""Real implementations of the contracts for the curate tests: a base-model stand-in whose
accuracy depends on the question kind, the attempt's seed and whether tools are offered; fake
OpenAI-compatible teachers and judge (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.policy.base import Completion, Conversation, SamplingParams

CODE = "<think>Compute it.</think>\n<code>\n```python\nprint({expr})\n```\n</code>"


def _text(conv: Conversation, role: str) -> str:
    return "".join(p for m in conv.messages if m.role == role for p in m.content if isinstance(p, str))


class KindPolicy:
    """Per question kind (from the sample's generation plan):
    corner_number: always right (too easy); product: right with tools when seed % 4 == 0
    (hard, tools help); count_shapes and landmark_year: always wrong (unsolved)."""

    name = "kind"
    model_name = "kind-policy"

    def __init__(self, samples: Sequence[Sample], base_dir: Path) -> None:
        from deepeyes_cli.curate.teacher import image_key

        self.by_image = {image_key(s.images[0].load(base_dir)): s for s in samples}  # questions repeat
        self.calls = 0

    async def generate(self, convs: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        out = []
        for conv in convs:
            self.calls += 1
            from PIL.Image import Image

            from deepeyes_cli.curate.teacher import image_key

            first = next(p for p in conv.messages[1].content if isinstance(p, Image))
            sample = self.by_image.get(image_key(first))
            kind = (sample.metadata.get("synthetic") or {}).get("kind") if sample else None
            tools = "<code>" in _text(conv, "system")
            turn = sum(m.role == "assistant" for m in conv.messages)
            answer = "0"
            if sample is not None and kind == "corner_number":
                answer = str(sample.answer)
            elif sample is not None and kind == "product" and tools:
                if turn == 0:
                    good = (params.seed or 0) % 4 == 0
                    out.append(Completion(CODE.format(expr=sample.answer if good else "1"), "stop", "</code>",
                                          metadata={"completion_tokens": 20}))
                    continue
                found = re.findall(r"stdout:\n```\n(-?\d+)", conv.messages[-1].content[-1]
                                   if isinstance(conv.messages[-1].content[-1], str) else "")
                answer = found[-1] if found else "0"
            prefix = "<think>" if turn == 0 else ""  # after a tool result the loop prefills <think>
            out.append(Completion(f"{prefix}I think.</think>\n<answer>{answer}</answer>", "stop",
                                  metadata={"completion_tokens": 9}))
        return out

    async def aclose(self) -> None:
        return None


def judge_responder(body: dict[str, Any]) -> str:
    """A judge that compares the candidate with the reference (as a strong judge model would)."""
    user = body["messages"][-1]["content"]
    ref = re.search(r"Reference answer:\n(.*?)\n\nCandidate answer:", user, re.S)
    cand = re.search(r"<candidate>\n(.*?)\n</candidate>", user, re.S)
    same = ref and cand and ref.group(1).strip().lower() == cand.group(1).strip().lower()
    return "The candidate matches.\nVERDICT: CORRECT" if same else "It differs.\nVERDICT: INCORRECT"


def arithmetic_teacher(wrong: bool = False, no_tools: bool = False):  # type: ignore[no-untyped-def]
    """An OpenAI-compatible teacher for "What is A * B?" questions: code first, then the
    answer read from the code's stdout (or a wrong one, or an answer without any tool)."""

    def respond(body: dict[str, Any]) -> str:
        msgs = body["messages"]
        question = next(m["content"] for m in msgs if m["role"] == "user")
        if isinstance(question, list):
            question = " ".join(p.get("text", "") for p in question if p.get("type") == "text")
        a, b = map(int, re.findall(r"What is (\d+) \* (\d+)\?", question)[0])
        if no_tools:
            return f"<think>Easy.</think>\n<answer>{a * b}</answer>"
        if not any(m["role"] == "assistant" for m in msgs):
            return CODE.format(expr=f"{a} * {b}")
        last = next(m["content"] for m in reversed(msgs) if m["role"] == "user")  # the tool result
        last = last if isinstance(last, str) else " ".join(p.get("text", "") for p in last if p.get("type") == "text")
        found = re.findall(r"stdout:\n```\n(-?\d+)", last)
        value = "7" if wrong else (found[-1] if found else "?")
        think = "" if msgs[-1]["role"] == "assistant" else "<think>"  # "<think>" prefilled (vLLM extensions)
        return f"{think}The code printed {value}.</think>\n<answer>{value}</answer>"

    return respond
