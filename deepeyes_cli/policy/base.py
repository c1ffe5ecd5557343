"""The Policy contract: given a batch of conversations and sampling parameters with stop
strings, return completions. Nothing else in the loop knows which backend it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from deepeyes_cli.protocol.messages import ChatMessage

if TYPE_CHECKING:
    pass

__all__ = ["ChatMessage", "Completion", "Conversation", "Policy", "SamplingParams"]

FinishReason = Literal["stop", "length", "error"]


@dataclass
class SamplingParams:
    max_tokens: int = 8192
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    include_stop_str_in_output: bool = True
    seed: int | None = None


@dataclass
class Conversation:
    messages: list[ChatMessage]
    # Text the next assistant turn starts with (the protocol prefills "<think>" after a tool result).
    assistant_prefix: str = ""


@dataclass
class Completion:
    text: str
    finish_reason: FinishReason
    stop_reason: str | None = None  # the stop string that ended generation, if any
    token_ids: list[int] | None = None  # as generated, never re-tokenized from text
    logprobs: list[float] | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # False when the backend could not prefill ``assistant_prefix`` (a plain OpenAI API):
    # the text then starts from scratch and the prefix is not part of the turn.
    prefix_applied: bool = True


@runtime_checkable
class Policy(Protocol):
    name: str

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]: ...

    async def aclose(self) -> None: ...
