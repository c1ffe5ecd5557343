"""What goes into the conversation: the first turns, and tool results as user turns.

A message's content is a list of text and PIL images in order (the policy contract's
``ChatMessage.content``). Tool texts mark images with ``<image>`` placeholders; here they
become image parts, and the count of image parts always equals the count of images (extra
placeholders are dropped, missing ones appended), so image tokens and image features can
never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.messages import ChatMessage, ToolOutput

if TYPE_CHECKING:
    from PIL.Image import Image


Content = list["str | Image"]


@dataclass
class Observation:
    content: Content  # the user turn's content
    images: list[Image]  # the images in it, in order
    dropped: int = 0  # images beyond the per-turn cap, not shown


def initial_messages(system: str | None, question: str, images: Sequence[Image], instruction: str) -> list[ChatMessage]:
    """System turn (unless ``system`` is None) and the first user turn:
    ``<image>…\\n{question}\\n\\n{instruction}`` with the images as parts. A question
    that carries its own ``<image>`` placeholders (RL parquet and LLaMA-Factory data) keeps
    its layout: each image where its placeholder stands."""
    from deepeyes_cli.protocol.prompts import user_prompt

    text = user_prompt(question, 0, instruction)
    content: Content
    if tags.IMAGE_PLACEHOLDER in question:
        content = split_placeholders(text, images, len(images)).content
    else:
        content = [*images, "\n" + text] if images else [text]
    messages = [ChatMessage("system", [system])] if system is not None else []
    return [*messages, ChatMessage("user", content)]


def _join(parts: Content) -> Content:
    """Merge adjacent strings and drop empty ones."""
    out: Content = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += p
                continue
        out.append(p)
    return out


def split_placeholders(text: str, images: Sequence[Image], limit: int) -> Observation:
    """Replace each ``<image>`` by the next image (at most ``limit`` shown); placeholders
    without an image vanish, images without a placeholder are appended."""
    pieces = text.split(tags.IMAGE_PLACEHOLDER)
    shown = list(images[:limit])
    content: Content = [pieces[0]]
    for i, piece in enumerate(pieces[1:]):
        if i < len(shown):
            content.append(shown[i])
        content.append(piece)
    content += shown[len(pieces) - 1:]
    return Observation(_join(content), shown, max(0, len(images) - limit))


def code_observation(result: ToolOutput, limit: int) -> Observation:
    """The code template (made by the code tool with :func:`tags.format_code_result`);
    only its trailing placeholders are images, so ``<image>`` printed by the code stays text."""
    text = result.text if result.ok else tags.format_code_result("", result.error or "", 0)
    images = list(result.images) if result.ok else []
    tail = tags.IMAGE_PLACEHOLDER * len(images)
    if images and text.endswith(tail):
        text = text[: len(text) - len(tail)]
    shown = images[:limit]
    return Observation(_join([text, *shown]), shown, len(images) - len(shown))


def tool_observation(result: ToolOutput, limit: int) -> Observation:
    """A ``<tool_call>`` result wrapped in ``<tool_response>``, or its error."""
    if not result.ok:
        return Observation([tags.format_tool_error(result.error or "tool failed")], [])
    return split_placeholders(tags.format_tool_response(result.text), result.images, limit)


def feedback_observation(message: str) -> Observation:
    return Observation([message], [])
