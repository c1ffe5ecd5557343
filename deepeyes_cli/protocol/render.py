"""Conversations to Qwen2.5-VL's ChatML, as text and as token spans.

:func:`render_prompt` gives the exact string Qwen2.5-VL's chat template produces (a test
renders a whole trajectory through the real template and compares). :func:`prompt_spans`
gives the same prompt as alternating text spans and *generated* token-id spans: the
token-level backends tokenize each text span and copy the generated ids verbatim, which
is how the original RL rollout builds its context (prompt ids, generated ids, observation
ids, …). Images are always collapsed here: one ``<|image_pad|>`` per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.messages import ChatMessage

if TYPE_CHECKING:
    from PIL.Image import Image


Span = str | list[int]  # text to tokenize, or ids as the model generated them


def is_image(part: Any) -> bool:
    return not isinstance(part, str)


def sanitize(text: str) -> str:
    """Remove special tokens from message text: only real images may produce image tokens
    (a stray ``<|image_pad|>`` in a question or a tool's output would misalign features),
    and only the framing may open or close a turn (a search hit holding
    ``<|im_end|>\\n<|im_start|>assistant`` would otherwise forge one)."""
    for special in tags.TEXT_FORBIDDEN:
        if special in text:
            text = text.replace(special, "")
    return text


def content_text(content: Sequence[str | Image]) -> str:
    """A message's text with each image as ``<|vision_start|><|image_pad|><|vision_end|>``."""
    return "".join(tags.IMAGE_TOKENS if is_image(p) else sanitize(p) for p in content)  # type: ignore[arg-type]


def _with_system(messages: Sequence[ChatMessage]) -> list[tuple[str, str, ChatMessage | None]]:
    out: list[tuple[str, str, ChatMessage | None]] = []
    if not messages or messages[0].role != "system":
        out.append(("system", tags.DEFAULT_SYSTEM, None))  # what the chat template inserts
    out += [(m.role, content_text(m.content), m) for m in messages]
    return out


def render_prompt(messages: Sequence[ChatMessage], assistant_prefix: str = "") -> str:
    """The whole prompt as text, generation prompt and prefill included."""
    parts = [f"{tags.IM_START}{role}\n{text}{tags.IM_END}\n" for role, text, _ in _with_system(messages)]
    return "".join(parts) + f"{tags.IM_START}assistant\n{sanitize(assistant_prefix)}"


def prompt_spans(messages: Sequence[ChatMessage], assistant_prefix: str = "",
                 end_id: int | None = None, generation_prompt: bool = True) -> list[Span]:
    """The prompt as text spans and generated-id spans. An assistant message with
    ``token_ids`` contributes ``<|im_start|>assistant\\n{prefill}`` as text, then its ids as
    generated, then ``<|im_end|>\\n`` (just ``\\n`` when the ids already end with ``end_id``,
    the ``<|im_end|>`` id). Adjacent text is merged, so each span is tokenized whole.
    Without ``generation_prompt`` a conversation ending with a generated turn ends with
    its ids (a whole trajectory, as RL trains on it)."""
    spans: list[Span] = []
    text = ""
    for role, rendered, msg in _with_system(messages):
        ids = msg.token_ids if msg is not None and role == "assistant" else None
        if ids is None:
            text += f"{tags.IM_START}{role}\n{rendered}{tags.IM_END}\n"
            continue
        spans.append(text + f"{tags.IM_START}assistant\n{sanitize(msg.prefill)}")  # type: ignore[union-attr]
        spans.append(list(ids))
        text = "\n" if end_id is not None and ids and ids[-1] == end_id else f"{tags.IM_END}\n"
    last_generated = bool(messages) and messages[-1].role == "assistant" and messages[-1].token_ids is not None
    if generation_prompt:
        spans.append(text + f"{tags.IM_START}assistant\n{sanitize(assistant_prefix)}")
    elif not last_generated:
        spans.append(text)
    return [s for s in spans if len(s)]


def prompt_images(messages: Sequence[ChatMessage]) -> list[Image]:
    """The conversation's images in prompt order (the order of the pads)."""
    return [p for m in messages for p in m.content if is_image(p)]  # type: ignore[misc]
