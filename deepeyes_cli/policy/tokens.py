"""Token-level prompts for the backends that take ids (transformers, vLLM).

A prompt is built *collapsed*: one ``<|image_pad|>`` per image, text spans tokenized whole
and generated spans copied as generated (never re-tokenized; RL trains on those ids).
vLLM expands each pad to the image's grid itself, so it gets the collapsed ids. The HF
model needs one pad per visual token: :func:`expand_image_pads` is the one place where
that expansion happens, and it also returns ``mm_token_type_ids`` so transformers computes
M-RoPE positions (without them it silently falls back to 1-D positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import BackendError
from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.render import prompt_images, prompt_spans

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

    from deepeyes_cli.agent.trajectory import Trajectory
    from deepeyes_cli.policy.base import Conversation


class TokenIds:
    """The ids of the protocol's special tokens in one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        def tid(token: str) -> int:
            i = tokenizer.convert_tokens_to_ids(token)
            if i is None or i == tokenizer.unk_token_id:
                raise BackendError(f"the tokenizer has no {token} token", hint="is this a Qwen2.5-VL checkpoint?")
            return int(i)

        self.im_end = tid(tags.IM_END)
        self.image_pad = tid(tags.IMAGE_PAD)
        self.endoftext = tid(tags.ENDOFTEXT)
        # token sequences of the bad words, as vLLM builds them (``<size>`` is several tokens)
        # (add_special_tokens=True is an equivalent mutant here and below: Qwen2 tokenizers add no BOS/EOS)
        self.bad_words = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in tags.BAD_WORDS]


def encode_prompt(conversation: Conversation, tokenizer: Any, ids: TokenIds) -> tuple[list[int], list[Image]]:
    """Collapsed prompt ids and the images, in pad order."""
    out: list[int] = []
    for span in prompt_spans(conversation.messages, conversation.assistant_prefix, end_id=ids.im_end):
        out += tokenizer(span, add_special_tokens=False)["input_ids"] if isinstance(span, str) else span
    images = prompt_images(conversation.messages)
    pads = out.count(ids.image_pad)
    if pads != len(images):  # only possible with generated ids holding a pad (bad words forbid it)
        raise BackendError(f"prompt has {pads} image pads for {len(images)} images",
                           hint="an assistant turn contains image tokens; regenerate it")
    return out, images


def trajectory_tokens(traj: Trajectory, tokenizer: Any, base_dir: str | Path | None = None
                      ) -> tuple[list[int], list[int], list[Image]]:
    """A whole trajectory as collapsed ids, a mask (1 on ids the model generated, 0 on the
    prompt and observations) and its images: the sequence RL trains on, built exactly as
    the prompts of its turns were."""
    from deepeyes_cli.agent.records import chat_messages

    ids = TokenIds(tokenizer)
    messages = chat_messages(traj, base_dir)
    out: list[int] = []
    mask: list[int] = []
    for span in prompt_spans(messages, end_id=ids.im_end, generation_prompt=False):  # (None: as falsy, equivalent)
        piece = tokenizer(span, add_special_tokens=False)["input_ids"] if isinstance(span, str) else span
        out += piece
        mask += [0 if isinstance(span, str) else 1] * len(piece)
    return out, mask, prompt_images(messages)


def expand_image_pads(ids: Sequence[int], grid_thw: Sequence[Sequence[int]], merge_size: int,
                      pad_id: int) -> tuple[list[int], list[int]]:
    """Expand the i-th ``<|image_pad|>`` to ``t*h*w / merge_size**2`` pads (the i-th image's
    visual tokens). Returns the expanded ids and their ``mm_token_type_ids`` (1 on image
    tokens, 0 elsewhere). The number of pads must equal the number of images."""
    counts = [int(t) * int(h) * int(w) // merge_size**2 for t, h, w in grid_thw]
    expanded: list[int] = []
    types: list[int] = []
    k = 0
    for token in ids:
        if token == pad_id:
            if k >= len(counts):
                raise BackendError(f"more image pads than images ({len(counts)})")
            expanded += [pad_id] * counts[k]
            types += [1] * counts[k]
            k += 1
        else:
            expanded.append(token)
            types.append(0)
    if k != len(counts):
        raise BackendError(f"{k} image pads for {len(counts)} images")
    return expanded, types
