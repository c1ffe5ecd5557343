"""Conversations to training ids: the one ``loss_mask``, and what a sample costs.

:func:`encode` renders a conversation through the protocol's own span renderer
(:func:`deepeyes_cli.protocol.render.prompt_spans`, the one the agent loop's prompts and
``policy.tokens.trajectory_tokens`` use), so SFT trains on the exact token layout the loop
produces at inference: the system prompt, ``<|im_start|>assistant\\n`` framing, the
``<think>`` prefill after a tool result, observations as user turns. ``loss_mask`` is 1 only
on tokens the model generated; the system, user and tool-result turns, the framing and the
prefill are 0. Generated ids a record kept are used verbatim (never re-tokenized); a turn
known only as text is tokenized alone, followed by ``<|im_end|>`` when it ended at EOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.policy.tokens import TokenIds
from deepeyes_cli.protocol.render import prompt_images, prompt_spans

if TYPE_CHECKING:
    from deepeyes_cli.policy.base import ChatMessage
    from deepeyes_cli.train.data.sources import ImageSource, SFTConversation


class DataError(InputError):
    """A training sample that cannot be used as it is (preflight reports these)."""


@dataclass
class Encoded:
    """A conversation as collapsed ids (one ``<|image_pad|>`` per image), its loss mask and
    its images in pad order."""

    input_ids: list[int]
    loss_mask: list[int]
    images: list[ImageSource]

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)


def _text_ids(tokenizer: Any, text: str) -> list[int]:
    # (no mutate: add_special_tokens=True or left out is equivalent, a Qwen2 tokenizer adds no BOS/EOS)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # pragma: no mutate


def _generated_ids(msg: ChatMessage, ends_at_eos: bool, tokenizer: Any, ids: TokenIds) -> list[int]:
    text = "".join(p for p in msg.content if isinstance(p, str))
    if msg.prefill and text.startswith(msg.prefill):
        text = text[len(msg.prefill):]
    out = _text_ids(tokenizer, text)
    return [*out, ids.im_end] if ends_at_eos else out


def encode(conv: SFTConversation, tokenizer: Any, ids: TokenIds | None = None) -> Encoded:
    """The one function that builds ``loss_mask`` (see the module docstring). Raises
    :class:`DataError` when the sample's image tokens and images disagree."""
    from deepeyes_cli.policy.base import ChatMessage

    ids = ids or TokenIds(tokenizer)
    if conv.problem:
        raise DataError(f"{conv.origin}: {conv.problem}")
    messages: list[ChatMessage] = []
    for i, m in enumerate(conv.messages):
        if m.role == "assistant" and m.token_ids is None:
            prefill = m.prefill if "".join(p for p in m.content if isinstance(p, str)).startswith(m.prefill) else ""
            m = ChatMessage("assistant", m.content, prefill=prefill,
                            token_ids=_generated_ids(m, conv.eos.get(i, True), tokenizer, ids))
        messages.append(m)
    if not any(m.role == "assistant" for m in messages):
        raise DataError(f"{conv.origin}: no assistant turn to train on")
    out: list[int] = []
    mask: list[int] = []
    # (no mutate: generation_prompt=None is as falsy as False)
    for span in prompt_spans(messages, generation_prompt=False,  # pragma: no mutate
                             end_id=ids.im_end):
        piece = _text_ids(tokenizer, span) if isinstance(span, str) else span
        out += piece
        mask += [0 if isinstance(span, str) else 1] * len(piece)
    images = prompt_images(messages)
    pads = out.count(ids.image_pad)
    if pads != len(images):
        raise DataError(f"{conv.origin}: {pads} image tokens for {len(images)} images",
                        hint="an assistant turn holds <|image_pad|> ids; fix or drop the sample")
    return Encoded(out, mask, images)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ImageBudget:
    """The processor's resize rule (Qwen2-VL ``smart_resize``): sizes to visual tokens
    without decoding pixels."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 3136
    max_pixels: int = 262144

    @classmethod
    def of(cls, processor: Any) -> ImageBudget:
        ip = processor.image_processor
        size = ip.size
        return cls(int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size),
                   int(size.shortest_edge if size.shortest_edge is not None else size.min_pixels),
                   int(size.longest_edge if size.longest_edge is not None else size.max_pixels))

    def grid(self, width: int, height: int) -> tuple[int, int, int]:
        """``image_grid_thw`` of an image of this size (the processor's own arithmetic)."""
        factor = self.patch_size * self.merge_size
        if max(height, width) / max(1, min(height, width)) > 200:
            raise DataError(f"image {width}x{height}: aspect ratio above 200", hint="crop or pad the image")
        # no floor at one patch here: a side under half a patch rounds to 0, and the min_pixels
        # branch below scales it up, as the processor does (a floor made 14x2000 cost 71 tokens, not 24)
        h = round(height / factor) * factor
        w = round(width / factor) * factor
        if h * w > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h = max(factor, math.floor(height / beta / factor) * factor)
            w = max(factor, math.floor(width / beta / factor) * factor)
        elif h * w < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h = math.ceil(height * beta / factor) * factor
            w = math.ceil(width * beta / factor) * factor
        return 1, h // self.patch_size, w // self.patch_size

    def tokens(self, width: int, height: int) -> int:
        t, h, w = self.grid(width, height)
        return t * h * w // self.merge_size**2


def expanded_length(enc: Encoded, image_tokens: list[int]) -> int:
    """Sequence length after each pad becomes its image's visual tokens."""
    return len(enc.input_ids) - len(image_tokens) + sum(image_tokens)
