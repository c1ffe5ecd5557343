"""The dataset index: every conversation encoded once, with its length after image
expansion, plus the problems found on the way (what preflight reports).

Indexing reads image headers, never pixels, unless ``verify_images`` is set (preflight
decodes every image once so a corrupt file fails before the first GPU hour, not at hour 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from deepeyes_cli.policy.tokens import TokenIds
from deepeyes_cli.train.data.encode import DataError, Encoded, ImageBudget, encode, expanded_length

if TYPE_CHECKING:
    from deepeyes_cli.train.data.sources import SFTConversation


@dataclass
class IndexedSample:
    id: str
    origin: str
    encoded: Encoded
    image_tokens: list[int]  # visual tokens per image, in pad order
    length: int  # tokens after image expansion

    @property
    def trained_tokens(self) -> int:
        return self.encoded.trained_tokens


@dataclass
class Problem:
    origin: str
    kind: Literal["image_tokens", "image_unreadable", "too_long", "no_target", "other"]
    message: str


@dataclass
class DataIndex:
    samples: list[IndexedSample]
    problems: list[Problem] = field(default_factory=list)
    read: int = 0
    dropped_long: int = 0

    @property
    def lengths(self) -> list[int]:
        return [s.length for s in self.samples]

    def summary(self) -> dict[str, Any]:
        lengths = sorted(self.lengths) or [0]
        return {"read": self.read, "kept": len(self.samples), "dropped_too_long": self.dropped_long,
                "problems": len(self.problems), "tokens": sum(lengths),
                "trained_tokens": sum(s.trained_tokens for s in self.samples),
                "max_length": lengths[-1], "median_length": lengths[len(lengths) // 2],
                "images": sum(len(s.image_tokens) for s in self.samples)}


def _kind(message: str) -> Literal["image_tokens", "no_target", "other"]:
    if "image" in message and ("placeholder" in message or "tokens for" in message):
        return "image_tokens"
    return "no_target" if "no assistant turn" in message else "other"


def build_index(conversations: Sequence[SFTConversation], tokenizer: Any, budget: ImageBudget, cutoff_len: int,
                *, verify_images: bool = False, on_progress: Callable[[int, int], None] | None = None
                ) -> DataIndex:
    """Encode every conversation; samples longer than ``cutoff_len`` are left out and counted
    (the caller decides whether that is fatal: ``sft.overlong``)."""
    ids = TokenIds(tokenizer)
    index = DataIndex([], read=len(conversations))
    for n, conv in enumerate(conversations):
        if on_progress is not None and n % 64 == 0:
            on_progress(n, len(conversations))
        try:
            enc = encode(conv, tokenizer, ids)
        except DataError as e:
            index.problems.append(Problem(conv.origin, _kind(e.message), e.message.removeprefix(f"{conv.origin}: ")))
            continue
        tokens: list[int] = []
        bad = None
        for src in enc.images:
            try:
                w, h = src.size(verify=verify_images)
                tokens.append(budget.tokens(w, h))
            except DataError as e:
                bad = Problem(conv.origin, "image_unreadable", f"{src.describe()}: {e.message}")
                break
            except Exception as e:  # OSError, PIL's UnidentifiedImageError, truncated files …
                bad = Problem(conv.origin, "image_unreadable", f"{src.describe()}: {type(e).__name__}: {e}")
                break
        if bad is not None:
            index.problems.append(bad)
            continue
        length = expanded_length(enc, tokens)
        if length > cutoff_len:
            index.dropped_long += 1
            index.problems.append(Problem(conv.origin, "too_long", f"{length} tokens > cutoff_len {cutoff_len}"))
            continue
        if enc.trained_tokens == 0:
            index.problems.append(Problem(conv.origin, "no_target", "no generated tokens to train on"))
            continue
        index.samples.append(IndexedSample(conv.id, conv.origin, enc, tokens, length))
    if on_progress is not None:
        on_progress(len(conversations), len(conversations))
    return index
