"""The ``scripted`` backend: replays given assistant turns. For tests, demos, benchmarks
and debugging tools without a model.

Turn *i* of every conversation is ``turns[i]`` (or ``turns(conversation)`` when a function
is given), cut at the earliest stop string like a real backend; the prefill is applied
(the script holds what comes after it). Past the end of the script it returns an empty
completion, which ends a trajectory cleanly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from deepeyes_cli.agent.budget import estimate_tokens
from deepeyes_cli.errors import InputError
from deepeyes_cli.policy.base import Completion, Conversation, FinishReason, SamplingParams
from deepeyes_cli.policy.stops import cut_at_stop

Script = Sequence[str] | Callable[[Conversation], str]


class ScriptedPolicy:
    name = "scripted"

    def __init__(self, turns: Script, *, delay_s: float = 0.0, model_name: str = "scripted") -> None:
        self.turns = turns
        self.delay_s = delay_s
        self.model_name = model_name
        self.calls = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedPolicy:
        p = Path(path).expanduser()
        try:
            turns = json.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"cannot read policy.script {p}: {e.strerror}", hint="check the path") from e
        except json.JSONDecodeError as e:
            raise InputError(f"policy.script {p} is not JSON: {e}", hint="write a JSON list of strings") from e
        if not (isinstance(turns, list) and all(isinstance(t, str) for t in turns)):
            raise InputError(f"policy.script {p} must be a JSON list of strings (assistant turns)")
        return cls(turns)

    def _next_text(self, conversation: Conversation) -> str:
        if callable(self.turns):
            return self.turns(conversation)
        index = sum(1 for m in conversation.messages if m.role == "assistant")
        return self.turns[index] if index < len(self.turns) else ""

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        self.calls += len(conversations)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out = []
        for conv in conversations:
            text, stop = cut_at_stop(self._next_text(conv), params.stop)
            if stop and not params.include_stop_str_in_output:
                text = text[: len(text) - len(stop)]
            tokens = estimate_tokens(text)
            finish: FinishReason = "length" if tokens > params.max_tokens else "stop"
            out.append(Completion(text, finish, stop, metadata={"completion_tokens": tokens}))
        return out

    async def aclose(self) -> None:
        return None
