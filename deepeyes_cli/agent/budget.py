"""Token accounting for the context limit.

Exact where the backend has a tokenizer (``count_text_tokens``: transformers, vLLM) and
reports prompt tokens; otherwise a byte-based estimate that errs on the high side. Images
are counted as the Qwen2.5-VL processor will size them (``smart_resize``), plus the two
vision delimiters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.images import image_token_count
from deepeyes_cli.protocol.render import content_text, is_image

if TYPE_CHECKING:
    from PIL.Image import Image


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate, on the high side (about 3 bytes per token)."""
    return len(text.encode("utf-8")) // 3 + 1 if text else 0


class TokenCounter:
    def __init__(self, policy: Any, min_pixels: int, max_pixels: int) -> None:
        counter: Callable[[str], int] | None = getattr(policy, "count_text_tokens", None)
        self.count_text = counter or estimate_tokens
        self.exact = counter is not None
        self.min_pixels, self.max_pixels = min_pixels, max_pixels

    def images(self, images: Sequence[Image]) -> int:
        return sum(image_token_count(im.width, im.height, self.min_pixels, self.max_pixels) + 2 for im in images)

    def message(self, role: str, content: Sequence[str | Image]) -> int:
        """Tokens one message adds to the context, framing included."""
        text = "".join(p for p in content if isinstance(p, str))
        framing = f"{tags.IM_START}{role}\n{tags.IM_END}\n"
        return self.count_text(text + framing) + self.images([p for p in content if is_image(p)])  # type: ignore[misc]

    def prompt(self, messages: Sequence[Any], prefix: str) -> int:
        """The whole prompt (messages with ``role`` and ``content``) plus the generation prompt."""
        text = "".join(f"{tags.IM_START}{m.role}\n{content_text([p for p in m.content if isinstance(p, str)])}"
                       f"{tags.IM_END}\n" for m in messages)
        images = [p for m in messages for p in m.content if is_image(p)]
        return self.count_text(text + f"{tags.IM_START}assistant\n{prefix}") + self.images(images)
