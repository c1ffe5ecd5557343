"""The shapes the protocol works on, defined here so that the protocol stands on nothing of
ours above it: a chat message (text and images interleaved), and what the protocol needs to
know of a tool, of a tool's result and of the agent's prompt settings. ``policy``, ``tools``
and ``agent`` provide these; the protocol only reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass
class ChatMessage:
    """A message ready for a backend: text and PIL images interleaved, in order."""

    role: Literal["system", "user", "assistant"]
    content: list[str | Image]
    # Assistant turns only: the ids the model generated, as generated (stop-string tail and
    # EOS included, never re-tokenized). Token-level backends use them instead of the text.
    token_ids: list[int] | None = None
    # Assistant turns only: the text the turn was prefilled with (the start of ``content``).
    prefill: str = ""


class ToolSpec(Protocol):
    """What the protocol reads of a tool: its name, its description and its argument schema."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...


class ToolOutput(Protocol):
    """What the protocol reads of a tool's result, to frame it as the next user turn."""

    @property
    def text(self) -> str: ...
    @property
    def images(self) -> Sequence[Image]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def ok(self) -> bool: ...


class PromptSettings(Protocol):
    """The recipe's prompt overrides (``agent:`` section)."""

    @property
    def system_prompt(self) -> str | None: ...
    @property
    def prompt_file(self) -> str | None: ...
    @property
    def user_instruction(self) -> str | None: ...
